//! `WITH RECURSIVE`: the plan's `RecursiveQuery` as a [`Recursive`] operator, after checking
//! that the recursive term is linear in the CTE's name (what makes the fixpoint maintainable
//! by feeding changes, [`crate::dataflow::recursive`]) — the places Postgres allows it too.

use datafusion::catalog::cte_worktable::CteWorkTable;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::JoinType;
use datafusion::logical_expr::{LogicalPlan, RecursiveQuery};

use super::{arrow_schema, node, refuse, Inputs};
use crate::dataflow::operator::Operator;
use crate::dataflow::recursive::{Recursive, WorkTable};
use crate::dataflow::temporal::calls_mz_now;
use crate::error::Result;

/// The first id the work tables of a view's recursive CTEs carry (counting down): far above
/// any catalog id.
const FIRST_WORK_ID: u64 = u64::MAX - 1;

/// The work table `plan` scans, if it is the scan of one.
pub(super) fn work_table(plan: &LogicalPlan) -> Option<String> {
    let LogicalPlan::TableScan(scan) = plan else { return None };
    let provider = source_as_provider(&scan.source).ok()?;
    provider.downcast_ref::<CteWorkTable>().map(|w| w.name().to_string())
}

/// How many times `plan` reads the work table `name`.
fn references(plan: &LogicalPlan, name: &str) -> usize {
    let mut n = 0;
    let _ = plan.apply_with_subqueries(|p| {
        n += usize::from(work_table(p).as_deref() == Some(name));
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// Refuses a recursive term that is not linear in `name`.
fn check_linear(plan: &LogicalPlan, name: &str) -> Result<()> {
    let here = |what: &str| {
        refuse(format!(
            "WITH RECURSIVE {name} whose recursive reference is {what} (it may appear once, under projections, \
             filters and joins, on a side whose rows are kept)"
        ))
    };
    if references(plan, name) == 0 || work_table(plan).is_some() {
        return Ok(());
    }
    match plan {
        LogicalPlan::Projection(p) => check_linear(&p.input, name),
        LogicalPlan::SubqueryAlias(a) => check_linear(&a.input, name),
        LogicalPlan::Unnest(u) => check_linear(&u.input, name),
        LogicalPlan::Filter(f) if calls_mz_now(&f.predicate) => Err(here("under a temporal filter (now())")),
        LogicalPlan::Filter(f) => check_linear(&f.input, name),
        LogicalPlan::Join(j) => {
            let (left, right) = (references(&j.left, name), references(&j.right, name));
            if left + right > 1 {
                return Err(here("read more than once"));
            }
            let (side, kept) = if left == 1 {
                (
                    &j.left,
                    matches!(j.join_type, JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti),
                )
            } else {
                (
                    &j.right,
                    matches!(
                        j.join_type,
                        JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
                    ),
                )
            };
            if !kept || j.null_aware {
                return Err(here(&format!("on the side of a {} join whose rows are not kept", j.join_type)));
            }
            check_linear(side, name)
        }
        other => Err(here(&format!("under {}", super::node_name(other)))),
    }
}

/// The operator of `q` (whose output schema is `plan`'s).
pub(super) fn recursive(plan: &LogicalPlan, q: &RecursiveQuery, tables: &mut Inputs) -> Result<Box<dyn Operator>> {
    if references(&q.static_term, &q.name) > 0 {
        return Err(refuse(format!("WITH RECURSIVE {} read in its own non-recursive term", q.name)));
    }
    if references(&q.recursive_term, &q.name) != 1 {
        return Err(refuse(format!(
            "WITH RECURSIVE {} whose recursive term reads it {} times (once is what a recursion is)",
            q.name,
            references(&q.recursive_term, &q.name)
        )));
    }
    check_linear(&q.recursive_term, &q.name)?;
    let seeds = node(&q.static_term, tables)?;
    let work = FIRST_WORK_ID - tables.work.len() as u64;
    tables.work.push((q.name.clone(), work));
    let step = node(&q.recursive_term, tables);
    tables.work.pop();
    Recursive::new(q.name.clone(), seeds, step?, work, q.is_distinct, arrow_schema(plan)).map(|r| Box::new(r) as _)
}

/// The leaf for a scan of the work table `name` (inside its recursive term).
pub(super) fn work_scan(plan: &LogicalPlan, name: &str, tables: &Inputs) -> Result<Box<dyn Operator>> {
    let LogicalPlan::TableScan(scan) = plan else { unreachable!("work_table() said it is a scan") };
    let Some((_, id)) = tables.work.iter().rev().find(|(n, _)| n == name) else {
        return Err(refuse(format!("the recursive CTE {name} read outside its recursive term")));
    };
    if scan.fetch.is_some() {
        return Err(refuse("LIMIT on a recursive reference"));
    }
    Ok(Box::new(WorkTable {
        id: *id,
        name: name.to_string(),
        projection: scan.projection.clone(),
        schema: arrow_schema(plan),
    }))
}
