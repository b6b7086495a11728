//! Point lookups without the general planner: `SELECT cols FROM rel WHERE key = $1 [AND ...]`.
//!
//! Serving a dashboard or an API means the same small query by key, thousands of times per
//! second, usually as a prepared statement. DataFusion's path (optimizer rules, physical
//! planning, an execution plan over a memory source) costs far more than the lookup itself,
//! so a query whose *logical plan* is exactly
//!
//! ```text
//! Projection: plain columns (aliases allowed)
//!   Filter: col_1 = p_1 AND ... AND col_n = p_n   (p = $n placeholder or constant)
//!     [SubqueryAlias]
//!       TableScan: a table or materialized view, no pushed-down filters or limit
//! ```
//!
//! where `col_1..col_n` are a prefix of the relation's key (its order columns) is recognized
//! once ([`PointQuery::recognize`]) and then answered by [`PointQuery::execute`]: bind the
//! parameters, cast them to the key columns' types, look the prefix up in the relation's
//! pinned rows (the same ordered lookup a scan with these filters does), project. Anything
//! else, and any parameter that does not cast exactly, takes the general path: the fast path
//! only ever answers what the general one would.
//!
//! A recognized query names the [`TableState`] it reads; it stays valid while the catalog
//! still resolves the relation's name to that same state ([`PointQuery::is_current`]), so a
//! DROP and re-CREATE under the same name is planned afresh.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::{Column, ParamValues};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::scalar::ScalarValue;

use super::provider::LocalTable;
use super::result::QueryResult;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::state::TableState;

/// Where a key value comes from.
#[derive(Debug, Clone)]
enum KeyValue {
    /// `$n`, by its 0-based index.
    Param(usize),
    Constant(ScalarValue),
}

/// A recognized point query: which relation, which key prefix, which columns.
#[derive(Debug)]
pub struct PointQuery {
    relation: String,
    state: Arc<TableState>,
    /// One (column, value) per key column, in key order (a prefix of the relation's order
    /// columns).
    key: Vec<(usize, KeyValue)>,
    /// Output columns as indices into the relation's columns.
    projection: Vec<usize>,
    /// The result schema, exactly as the general planner reports it (Describe).
    schema: SchemaRef,
}

impl PointQuery {
    /// Recognizes `plan` (as planned from SQL, before optimization) as a point query.
    pub fn recognize(plan: &LogicalPlan) -> Option<PointQuery> {
        let LogicalPlan::Projection(projection) = plan else { return None };
        let LogicalPlan::Filter(filter) = projection.input.as_ref() else { return None };
        let mut below = filter.input.as_ref();
        while let LogicalPlan::SubqueryAlias(alias) = below {
            below = alias.input.as_ref();
        }
        let LogicalPlan::TableScan(scan) = below else { return None };
        if !scan.filters.is_empty() || scan.fetch.is_some() || scan.projection.is_some() {
            return None;
        }
        if scan.table_name.schema().is_some_and(|s| s != "public") {
            return None;
        }
        let provider = source_as_provider(&scan.source).ok()?;
        let state = provider.downcast_ref::<LocalTable>()?.state().clone();
        // Columns are resolved against the filter's input schema (the alias, if any); its
        // fields are the relation's columns in order.
        let input_schema = filter.input.schema();
        let column_index = |c: &Column| input_schema.index_of_column(c).ok();

        let mut bound: Vec<(usize, KeyValue)> = Vec::new();
        for conjunct in split_conjunction(&filter.predicate) {
            let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = conjunct else { return None };
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), v) | (v, Expr::Column(c)) if !matches!(v, Expr::Column(_)) => (c, v),
                _ => return None,
            };
            let value = match value {
                Expr::Placeholder(p) => KeyValue::Param(p.id.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)?),
                Expr::Literal(v, _) if !v.is_null() => KeyValue::Constant(v.clone()),
                _ => return None,
            };
            let index = column_index(column)?;
            if bound.iter().any(|(i, _)| *i == index) {
                return None;
            }
            bound.push((index, value));
        }
        let mut key = Vec::new();
        for col in state.order_columns() {
            match bound.iter().position(|(i, _)| *i == col) {
                Some(at) => key.push(bound.swap_remove(at)),
                None => break,
            }
        }
        if key.is_empty() || !bound.is_empty() {
            return None; // not a key prefix (or a condition on another column)
        }

        let mut columns = Vec::new();
        for expr in &projection.expr {
            let column = match expr {
                Expr::Column(c) => c,
                Expr::Alias(a) => match a.expr.as_ref() {
                    Expr::Column(c) => c,
                    _ => return None,
                },
                _ => return None,
            };
            columns.push(column_index(column)?);
        }
        let schema = super::naming::output_schema(plan);
        let table_schema = state.schema();
        let same_types =
            columns.iter().zip(schema.fields()).all(|(&c, f)| table_schema.field(c).data_type() == f.data_type());
        if !same_types {
            return None;
        }
        Some(PointQuery { relation: scan.table_name.table().to_string(), state, key, projection: columns, schema })
    }

    /// True while the catalog still resolves the relation's name to the rows this query reads.
    /// The relation it reads.
    pub fn relation(&self) -> &str {
        &self.relation
    }

    pub fn is_current(&self, catalog: &Catalog) -> bool {
        catalog.resolves_to(&self.relation, &self.state)
    }

    /// The result rows, or `None` when a parameter is missing or does not convert exactly to
    /// its key column's type (the general path then answers, with its own casts and errors).
    pub fn execute(&self, params: Option<&ParamValues>) -> Result<Option<QueryResult>> {
        let table_schema = self.state.schema();
        let mut values: Vec<ArrayRef> = Vec::with_capacity(self.key.len());
        let mut matches_nothing = false;
        for (col, value) in &self.key {
            let scalar = match value {
                KeyValue::Constant(v) => v.clone(),
                KeyValue::Param(i) => match params {
                    Some(ParamValues::List(list)) => match list.get(*i) {
                        Some(v) => v.value.clone(),
                        None => return Ok(None),
                    },
                    _ => return Ok(None),
                },
            };
            if scalar.is_null() {
                matches_nothing = true; // `key = NULL` is never true
                continue;
            }
            let target = table_schema.field(*col).data_type();
            let Ok(cast) = scalar.cast_to(target) else { return Ok(None) };
            // Only exact conversions: `id = 1.5` must not find id 1.
            if cast.cast_to(&scalar.data_type()).ok().as_ref() != Some(&scalar) {
                return Ok(None);
            }
            values.push(cast.to_array()?);
        }
        let pinned = self.state.pin();
        pinned.readable()?;
        let batch = if matches_nothing {
            RecordBatch::new_empty(self.schema.clone())
        } else {
            let found = self.state.lookup(&pinned, &values)?;
            let columns = self.projection.iter().map(|&c| found.column(c).clone()).collect();
            match RecordBatch::try_new(self.schema.clone(), columns) {
                Ok(b) => b,
                Err(_) => return Ok(None), // e.g. a NULL in a column the plan calls NOT NULL
            }
        };
        let stream = RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::iter([Ok(batch)]));
        Ok(Some(QueryResult::Rows { schema: self.schema.clone(), stream: Box::pin(stream) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Engine, HwStatement};
    use crate::state::{CheckpointedStore, MemoryStore};

    async fn recognized(engine: &Arc<Engine>, sql: &str) -> Option<PointQuery> {
        let session = engine.session();
        let Some(HwStatement::Sql(stmt)) = engine.parser().parse(sql).unwrap().pop() else { panic!("{sql}") };
        let plan = session.plan(&stmt).await.unwrap();
        PointQuery::recognize(&plan)
    }

    #[tokio::test]
    async fn recognizes_exactly_key_prefix_lookups() {
        let engine = Engine::open(Arc::new(CheckpointedStore::new(Arc::new(MemoryStore::default())))).await.unwrap();
        engine
            .session()
            .execute_sql(
                "CREATE TABLE t (a INT, b TEXT, c BIGINT, PRIMARY KEY (a, b)); CREATE TABLE bag (x INT, y INT)",
            )
            .await
            .unwrap();
        for sql in [
            "SELECT * FROM t WHERE a = $1",
            "SELECT c, b FROM t WHERE b = $2 AND a = $1",
            "SELECT c AS total FROM t AS u WHERE u.a = 3",
            "SELECT * FROM public.t WHERE 7 = a",
            "SELECT * FROM bag WHERE x = $1",
        ] {
            assert!(recognized(&engine, sql).await.is_some(), "{sql} should be a point query");
        }
        let q = recognized(&engine, "SELECT c, b FROM t WHERE b = $2 AND a = $1").await.unwrap();
        assert_eq!(q.projection, vec![2, 1]);
        assert!(matches!(q.key.as_slice(), [(0, KeyValue::Param(0)), (1, KeyValue::Param(1))]));
        for sql in [
            "SELECT * FROM t WHERE b = $1",
            "SELECT * FROM t WHERE a = $1 AND true",
            "SELECT * FROM t WHERE a = $1 AND c = 2",
            "SELECT * FROM t WHERE a > 1",
            "SELECT a + 1 FROM t WHERE a = 1",
            "SELECT * FROM t WHERE a = 1 ORDER BY b",
            "SELECT * FROM t WHERE a = 1 LIMIT 1",
            "SELECT DISTINCT c FROM t WHERE a = 1",
            "SELECT * FROM t WHERE a = NULL",
            "SELECT * FROM t WHERE a = 1 OR a = 2",
            "SELECT * FROM bag WHERE y = 1",
            "SELECT * FROM pg_catalog.pg_class WHERE oid = 1",
        ] {
            assert!(recognized(&engine, sql).await.is_none(), "{sql} is not a point query");
        }
    }
}
