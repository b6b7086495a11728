//! `x NOT IN (subquery)` where DataFusion would answer it without SQL's NULL rule.
//!
//! As a conjunct of `WHERE` or `HAVING` (`... AND x NOT IN (SELECT y ...)`) DataFusion plans a
//! null-aware anti join: no row when the subquery yields a NULL, none for a NULL `x` — as
//! Postgres. Anywhere else (under `OR`, `NOT`, `CASE`, in a select list or a join condition)
//! it plans a mark join whose mark is plain `false` where Postgres has NULL, so
//! `v < 1 OR k NOT IN (SELECT k FROM b)` kept rows Postgres drops. Those places are refused
//! (0A000) with the spelling that means the same everywhere, `NOT EXISTS`.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Query, SetExpr, Statement, Visit, Visitor};

use crate::error::{Error, Result};

/// Refuses the `NOT IN (subquery)` of `stmt` that are not conjuncts of a WHERE or HAVING.
pub(super) fn check(stmt: &Statement) -> Result<()> {
    struct Finder {
        /// The `NOT IN` nodes that are conjuncts (by address: the tree is not moved while
        /// visited).
        allowed: HashSet<usize>,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            allow_conjuncts(&query.body, &mut self.allowed);
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::InSubquery { negated: true, .. } if !self.allowed.contains(&(e as *const Expr as usize)) => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    match stmt.visit(&mut Finder { allowed: HashSet::new() }) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::FeatureNotSupported(
            "x NOT IN (subquery) under OR, NOT or CASE, in a select list or a join condition (it would be answered \
             without SQL's NULL rule: write NOT EXISTS (SELECT 1 FROM ... WHERE y = x), or make the NOT IN one of \
             the ANDs of WHERE)"
                .into(),
        )),
    }
}

/// Records the `NOT IN` conjuncts of the WHERE and HAVING clauses of `body`'s selects.
fn allow_conjuncts(body: &SetExpr, allowed: &mut HashSet<usize>) {
    match body {
        SetExpr::Select(s) => {
            for clause in [&s.selection, &s.having].into_iter().flatten() {
                conjuncts(clause, allowed);
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            allow_conjuncts(left, allowed);
            allow_conjuncts(right, allowed);
        }
        SetExpr::Query(q) => allow_conjuncts(&q.body, allowed),
        _ => {}
    }
}

fn conjuncts(e: &Expr, allowed: &mut HashSet<usize>) {
    match e {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, allowed);
            conjuncts(right, allowed);
        }
        Expr::Nested(inner) => conjuncts(inner, allowed),
        Expr::InSubquery { negated: true, .. } => {
            allowed.insert(e as *const Expr as usize);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(sql: &str) -> Result<()> {
        let stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .unwrap();
        check(&stmts[0])
    }

    #[test]
    fn not_in_is_refused_where_its_null_rule_would_be_lost() {
        for ok in [
            "SELECT id FROM a WHERE k NOT IN (SELECT k FROM b)",
            "SELECT id FROM a WHERE v > 1 AND (k NOT IN (SELECT k FROM b)) AND v < 9",
            "SELECT k FROM a GROUP BY k HAVING k NOT IN (SELECT k FROM b)",
            "SELECT id FROM a WHERE v < 1 OR k IN (SELECT k FROM b)",
            "SELECT id FROM a WHERE v < 1 OR NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k)",
            "SELECT * FROM (SELECT id FROM a WHERE k NOT IN (SELECT k FROM b)) s UNION SELECT 1",
        ] {
            assert!(checked(ok).is_ok(), "{ok}");
        }
        for refused in [
            "SELECT id FROM a WHERE v < 1 OR k NOT IN (SELECT k FROM b)",
            "SELECT id, k NOT IN (SELECT k FROM b) FROM a",
            "SELECT id FROM a WHERE CASE WHEN v > 1 THEN k NOT IN (SELECT k FROM b) ELSE true END",
            "SELECT id FROM a JOIN c ON a.id = c.id AND a.k NOT IN (SELECT k FROM b)",
        ] {
            assert_eq!(checked(refused).map_err(|e| e.sqlstate()), Err("0A000"), "{refused}");
        }
    }
}

/// Refuses the correlated `NOT IN (subquery)` (a null-aware anti join with a condition beside
/// its key): DataFusion applies the NULL rule over the whole subquery instead of the rows
/// each outer row correlates with, so `k NOT IN (SELECT k FROM b WHERE b.w > a.v)` lost rows
/// whose own subquery held no NULL. Runs after the optimizer's rules (it is added last).
#[derive(Debug, Default)]
pub struct CorrelatedNotIn;

impl datafusion::optimizer::OptimizerRule for CorrelatedNotIn {
    fn name(&self) -> &str {
        "refuse_correlated_not_in"
    }

    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        Some(datafusion::optimizer::ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &dyn datafusion::optimizer::OptimizerConfig,
    ) -> datafusion::error::Result<datafusion::common::tree_node::Transformed<datafusion::logical_expr::LogicalPlan>>
    {
        if let datafusion::logical_expr::LogicalPlan::Join(j) = &plan {
            if j.null_aware && (j.filter.is_some() || j.on.len() != 1) {
                return Err(datafusion::error::DataFusionError::NotImplemented(
                    "a correlated or multi-column x NOT IN (subquery) (DataFusion would apply SQL's NULL rule to the \
                     whole subquery, not to the rows each row correlates with): write NOT EXISTS (SELECT 1 FROM ... \
                     WHERE ... AND y = x)"
                        .into(),
                ));
            }
        }
        Ok(datafusion::common::tree_node::Transformed::no(plan))
    }
}
