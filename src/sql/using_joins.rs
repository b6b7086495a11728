//! `JOIN ... USING (c)` and `NATURAL JOIN` as Postgres answers them (issue 31).
//!
//! The SQL standard merges each `USING` column into one output column: first in `SELECT *`
//! (then the left side's other columns, then the right side's), and its value is the left
//! side's for inner and left joins, the right side's for right joins and `COALESCE` of both
//! for full joins. DataFusion put `*`'s merged column after the left side's columns, and
//! took an unqualified `c` from the left side for every kind of join: `SELECT * FROM t2 LEFT
//! JOIN t1 USING (f1)` gave `b, f1, a` with `f1` NULL where `t1` had no match, and a RIGHT or
//! FULL join gave NULL for rows only the right side had.
//!
//! [`rewrite`] spells such a join out before planning — `ON l.c = r.c`, the merged column
//! written as the expression above wherever the query names it unqualified, and `*`
//! expanded in Postgres's order — for the common shape: one join of two tables (or views)
//! in a `SELECT` without subqueries in its expressions. Other shapes are left to DataFusion.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Right,
    Full,
}

/// A name as the planner resolves it: unquoted identifiers fold to lower case.
fn normalized(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

fn table_key(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name.0.iter().map(|p| p.as_ident().map(normalized)).collect::<Option<_>>()?;
    Some(parts.join("."))
}

/// Whether some SELECT of `stmt` joins with USING or NATURAL.
fn has_using_join(stmt: &Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            let mut found = false;
            each_select(&query.body, &mut |s| {
                found |= s.from.iter().flat_map(|t| &t.joins).any(|j| {
                    matches!(constraint_of(&j.join_operator), Some(JoinConstraint::Using(_) | JoinConstraint::Natural))
                })
            });
            self.0 |= found;
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = stmt.visit(&mut finder);
    finder.0
}

fn each_select(body: &SetExpr, f: &mut dyn FnMut(&Select)) {
    match body {
        SetExpr::Select(s) => f(s),
        SetExpr::SetOperation { left, right, .. } => {
            each_select(left, f);
            each_select(right, f);
        }
        _ => {}
    }
}

fn each_select_mut(body: &mut SetExpr, f: &mut dyn FnMut(&mut Select)) {
    match body {
        SetExpr::Select(s) => f(s),
        SetExpr::SetOperation { left, right, .. } => {
            each_select_mut(left, f);
            each_select_mut(right, f);
        }
        _ => {}
    }
}

fn constraint_of(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c) => Some(c),
        _ => None,
    }
}

/// Rewrites the USING / NATURAL joins of `stmt` (see the module docs), reading the joined
/// relations' columns from `ctx`.
pub async fn rewrite(stmt: &mut Statement, ctx: &SessionContext) {
    if !has_using_join(stmt) {
        return;
    }
    let mut names = Vec::new();
    let _ = datafusion::sql::sqlparser::ast::visit_relations(stmt, |name| {
        names.push(name.clone());
        ControlFlow::<()>::Continue(())
    });
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    for name in names {
        let Some(key) = table_key(&name) else { continue };
        if columns.contains_key(&key) {
            continue;
        }
        if let Ok(provider) = ctx.table_provider(TableReference::from(key.as_str())).await {
            columns.insert(key, provider.schema().fields().iter().map(|f| f.name().clone()).collect());
        }
    }
    struct Rewriter<'a>(&'a HashMap<String, Vec<String>>);
    impl VisitorMut for Rewriter<'_> {
        type Break = ();
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            each_select_mut(&mut query.body, &mut |s| rewrite_select(s, self.0));
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Rewriter(&columns));
}

/// A joined table: its columns and the name its columns are qualified with.
fn side(factor: &TableFactor, columns: &HashMap<String, Vec<String>>) -> Option<(Ident, Vec<String>)> {
    let TableFactor::Table { name, alias, args: None, with_hints, .. } = factor else { return None };
    if !with_hints.is_empty() || alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return None;
    }
    let cols = columns.get(&table_key(name)?)?.clone();
    let qualifier = match alias {
        Some(a) => a.name.clone(),
        None => name.0.last()?.as_ident()?.clone(),
    };
    Some((qualifier, cols))
}

fn column(q: &Ident, c: &str) -> Expr {
    Expr::CompoundIdentifier(vec![q.clone(), Ident::with_quote('"', c)])
}

fn rewrite_select(select: &mut Select, columns: &HashMap<String, Vec<String>>) {
    // Subqueries could name the columns too, meaning their own: left to DataFusion.
    let mut subquery = false;
    let _ = visit_expressions(&*select, |e| {
        subquery |= matches!(e, Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. });
        ControlFlow::<()>::Continue(())
    });
    let plain_wildcards = select.projection.iter().all(|item| match item {
        SelectItem::Wildcard(options) => options.to_string().is_empty(),
        _ => true,
    });
    if subquery || !plain_wildcards {
        return;
    }
    let [from] = select.from.as_mut_slice() else { return };
    let [join] = from.joins.as_mut_slice() else { return };
    let kind = match &join.join_operator {
        JoinOperator::Join(_) | JoinOperator::Inner(_) => Kind::Inner,
        JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => Kind::Left,
        JoinOperator::Right(_) | JoinOperator::RightOuter(_) => Kind::Right,
        JoinOperator::FullOuter(_) => Kind::Full,
        _ => return,
    };
    let Some((lq, left)) = side(&from.relation, columns) else { return };
    let Some((rq, right)) = side(&join.relation, columns) else { return };
    if normalized(&lq) == normalized(&rq) {
        return;
    }
    let using: Vec<String> = match constraint_of(&join.join_operator) {
        Some(JoinConstraint::Using(names)) => {
            match names.iter().map(|n| n.0.last().and_then(|p| p.as_ident()).map(normalized)).collect() {
                Some(u) => u,
                None => return,
            }
        }
        Some(JoinConstraint::Natural) => left.iter().filter(|c| right.contains(c)).cloned().collect(),
        _ => return,
    };
    if using.is_empty() || using.iter().any(|u| !left.contains(u) || !right.contains(u)) {
        return;
    }
    let merged = |u: &str| -> Expr {
        match kind {
            Kind::Inner | Kind::Left => column(&lq, u),
            Kind::Right => column(&rq, u),
            Kind::Full => Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new("coalesce")]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: [column(&lq, u), column(&rq, u)]
                        .into_iter()
                        .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                        .collect(),
                    clauses: Vec::new(),
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            }),
        }
    };
    let on = using
        .iter()
        .map(|u| Expr::BinaryOp {
            left: Box::new(column(&lq, u)),
            op: BinaryOperator::Eq,
            right: Box::new(column(&rq, u)),
        })
        .reduce(|a, b| Expr::BinaryOp { left: Box::new(a), op: BinaryOperator::And, right: Box::new(b) })
        .expect("at least one column");
    let constraint = JoinConstraint::On(on);
    join.join_operator = match kind {
        Kind::Inner => JoinOperator::Inner(constraint),
        Kind::Left => JoinOperator::LeftOuter(constraint),
        Kind::Right => JoinOperator::RightOuter(constraint),
        Kind::Full => JoinOperator::FullOuter(constraint),
    };
    let replace = |e: &mut Expr| {
        let _ = visit_expressions_mut(e, |e| {
            if let Expr::Identifier(id) = e {
                let name = normalized(id);
                if using.contains(&name) {
                    *e = Expr::Nested(Box::new(merged(&name)));
                }
            }
            ControlFlow::<()>::Continue(())
        });
    };
    let mut projection = Vec::new();
    for item in std::mem::take(&mut select.projection) {
        match item {
            SelectItem::Wildcard(_) => {
                for u in &using {
                    projection.push(SelectItem::ExprWithAlias { expr: merged(u), alias: Ident::with_quote('"', u) });
                }
                for c in left.iter().filter(|c| !using.contains(c)) {
                    projection.push(SelectItem::UnnamedExpr(column(&lq, c)));
                }
                for c in right.iter().filter(|c| !using.contains(c)) {
                    projection.push(SelectItem::UnnamedExpr(column(&rq, c)));
                }
            }
            SelectItem::UnnamedExpr(Expr::Identifier(id)) if using.contains(&normalized(&id)) => {
                projection.push(SelectItem::ExprWithAlias { expr: merged(&normalized(&id)), alias: id });
            }
            SelectItem::UnnamedExpr(mut e) => {
                replace(&mut e);
                projection.push(SelectItem::UnnamedExpr(e));
            }
            SelectItem::ExprWithAlias { mut expr, alias } => {
                replace(&mut expr);
                projection.push(SelectItem::ExprWithAlias { expr, alias });
            }
            other => projection.push(other),
        }
    }
    select.projection = projection;
    if let Some(e) = select.selection.as_mut() {
        replace(e);
    }
    if let Some(e) = select.having.as_mut() {
        replace(e);
    }
    if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
        exprs.iter_mut().for_each(replace);
    }
}
