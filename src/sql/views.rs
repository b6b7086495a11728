//! `CREATE MATERIALIZED VIEW` and `EXPLAIN MATERIALIZED VIEW`: the SQL side of
//! [`crate::dataflow`].
//!
//! A materialized view is planned by DataFusion like any query (analyzed, then optimized),
//! checked for what cannot be maintained, compiled into operators by
//! [`crate::dataflow::compile`], filled from its inputs and registered with the
//! [`Dataflow`](crate::dataflow::Dataflow). Its result is a stored [`TableState`] that queries
//! read like a table; at start-up the view's result and operator state are loaded from the
//! store ([`crate::dataflow::durable`]), or the view is recomputed from its inputs when its
//! plan no longer prints the same.

use std::sync::Arc;

use datafusion::common::Constraints;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast::{CreateView, Statement};

use super::ddl::{relation_name, relations_read};
use super::parser::ObjectType;
use super::provider::LocalTable;
use super::result::QueryResult;
use super::Session;
use crate::catalog::{Namespace, Relation};
use crate::dataflow::compile::check_maintainable;
use crate::dataflow::operator::nullable;
use crate::error::{Error, Result};
use crate::state::TableState;

const TAG: &str = "CREATE MATERIALIZED VIEW";

/// `CREATE [OR REPLACE] MATERIALIZED VIEW [IF NOT EXISTS] name [(columns)] AS query`. OR
/// REPLACE of a view others read is refused (2BP01); the new query is planned and checked
/// before the old view is dropped, and the old view is created again if the new one fails.
pub(super) async fn create_materialized_view(
    s: &Session,
    cv: &CreateView,
    restore: Option<u64>,
) -> Result<QueryResult> {
    let name = relation_name(&cv.name)?;
    let catalog = s.engine().catalog();
    let mut replaced = None;
    if let Some(existing) = catalog.get(Namespace::Relation, &name) {
        if cv.if_not_exists && existing.object_type() == ObjectType::MaterializedView {
            return Ok(QueryResult::command(TAG));
        }
        if !cv.or_replace || restore.is_some() {
            return Err(Error::duplicate(existing.object_type().noun(), name));
        }
        if existing.object_type() != ObjectType::MaterializedView {
            return Err(Error::WrongObjectType { name, expected: "materialized view" });
        }
        // Views and sinks reading it were built for its old columns (as CREATE OR REPLACE
        // VIEW in Postgres, which refuses to change what dependents read).
        let dependents = catalog.dependents(&name);
        if !dependents.is_empty() {
            return Err(Error::DependentObjects {
                kind: "materialized view",
                name,
                dependents: dependents.iter().map(|d| format!("{} {}", d.object_type().noun(), d.entry.name)).collect(),
            });
        }
        replaced = Some(existing);
    }
    let mut normalized = cv.clone();
    normalized.if_not_exists = false;
    normalized.or_replace = false;
    let create_sql = Statement::CreateView(normalized.clone()).to_string();
    // Planned as a plain view: DataFusion applies the column list and view inlining.
    normalized.materialized = false;
    super::naming::name_view_columns(&mut normalized.query);
    let LogicalPlan::Ddl(DdlStatement::CreateView(view)) = s.plan(&Statement::CreateView(normalized)).await? else {
        return Err(Error::Internal("CREATE MATERIALIZED VIEW did not plan to a view".into()));
    };
    let depends_on = relations_read(s, &cv.query);
    if depends_on.contains(&name) {
        return Err(Error::InvalidParameterValue(format!("materialized view \"{name}\" cannot read itself")));
    }
    let state = s.context().state();
    let analyzed =
        state.analyzer().execute_and_check(view.input.as_ref().clone(), state.config_options(), |_, _| {})?;
    let analyzed = crate::dataflow::temporal::mark_now(analyzed)?;
    check_maintainable(&analyzed)?;
    let plan = optimize(analyzed, &state)?;
    let schema = nullable(plan.schema().as_arrow());
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name()) {
            return Err(Error::DuplicateColumn(format!("column \"{}\" specified more than once", f.name())));
        }
    }
    // The new query planned and checked: the old view goes, and comes back if the new one
    // cannot be created (its query fails on the rows there are, ...).
    if let Some(old) = &replaced {
        super::ddl::drop_and_release(s, std::slice::from_ref(old)).await?;
        let created = Box::pin(create_materialized_view(s, &normalized_create(cv), None)).await;
        if let Err(e) = &created {
            if let Err(again) = Box::pin(s.execute_sql(&old.entry.create_sql)).await {
                tracing::error!(view = %name, error = %again, "cannot bring back the view CREATE OR REPLACE failed to replace");
            }
            tracing::warn!(view = %name, error = %e, "CREATE OR REPLACE MATERIALIZED VIEW failed; the old view is back");
        }
        return created;
    }
    let id = match restore {
        Some(id) => id,
        None => catalog.reserve_id()?,
    };
    let output = Arc::new(TableState::new(id, &name, schema, None)?);
    let dataflow = s.engine().dataflow().clone();
    dataflow.create_view(id, &name, plan, output.clone(), restore.is_some())?;
    let provider = Arc::new(LocalTable::new(output.clone(), Constraints::default(), Vec::new()));
    let relation = Relation::Table { state: output, provider };
    let created = match restore {
        Some(id) => catalog
            .create(ObjectType::MaterializedView, &name, create_sql, depends_on, Some(id), |_| Ok(Some(relation))),
        None => catalog.create_reserved(ObjectType::MaterializedView, &name, create_sql, depends_on, id, relation),
    };
    if let Err(e) = created {
        dataflow.discard_view(id);
        return Err(e);
    }
    Ok(QueryResult::command(TAG))
}

/// DataFusion's optimizer, except that `DISTINCT ON` stays as it is (rather than becoming
/// `first_value(... ORDER BY ...)` aggregates): the dataflow maintains it as a top-1 per
/// partition. Plans without it are optimized exactly as before.
fn optimize(plan: LogicalPlan, state: &datafusion::execution::SessionState) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Distinct;
    let mut distinct_on = false;
    plan.apply(|n| {
        distinct_on |= matches!(n, LogicalPlan::Distinct(Distinct::On(_)));
        Ok(if distinct_on { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    if !distinct_on {
        return Ok(state.optimizer().optimize(plan, state, |_, _| {})?);
    }
    let rules = state.optimizer().rules.iter().filter(|r| r.name() != "replace_distinct_aggregate").cloned().collect();
    Ok(datafusion::optimizer::Optimizer::with_rules(rules).optimize(plan, state, |_, _| {})?)
}

/// `cv` without OR REPLACE and IF NOT EXISTS: the CREATE that replaces a view.
fn normalized_create(cv: &CreateView) -> CreateView {
    let mut plain = cv.clone();
    plain.or_replace = false;
    plain.if_not_exists = false;
    plain
}

/// `EXPLAIN MATERIALIZED VIEW name`: one row per operator, how the view came back at
/// start-up, then the state sizes.
pub(super) fn explain_view(s: &Session, name: &str) -> Result<QueryResult> {
    let obj = s.engine().catalog().get(Namespace::Relation, name).ok_or_else(|| Error::UndefinedTable(name.into()))?;
    if obj.object_type() != ObjectType::MaterializedView {
        return Err(Error::WrongObjectType { name: name.into(), expected: "materialized view" });
    }
    let info = s
        .engine()
        .dataflow()
        .view_info(obj.entry.id)
        .ok_or_else(|| Error::Internal(format!("materialized view {name} is not running")))?;
    let mut lines = info.dataflow.clone();
    let per_row = if info.rows > 0 { (info.state_bytes + info.result_bytes) as i64 / info.rows } else { 0 };
    lines.push(
        if info.loaded { "Start-up: loaded from the last checkpoint" } else { "Start-up: computed from its inputs" }
            .to_string(),
    );
    lines.push(format!(
        "State: {} bytes in operators, {} bytes for {} result rows ({} bytes per result row)",
        info.state_bytes, info.result_bytes, info.rows, per_row
    ));
    QueryResult::text_rows(&["dataflow"], lines.into_iter().map(|l| vec![l]).collect())
}
