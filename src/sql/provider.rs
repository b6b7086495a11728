//! DataFusion's view of the catalog: the `public` schema and the table providers behind it.
//!
//! [`PublicSchema`] answers DataFusion's name lookups from the [`Catalog`]; a table (or a
//! materialized view's result) is a [`LocalTable`] whose scan is an in-memory execution plan
//! over the rows the query pinned ([`PINNED`]): every table a query reads is pinned at once,
//! before planning, so the query sees all of them as of the same commit. Equality filters on
//! a prefix of the table's key (for tables without a key, of its columns) are lookups in the
//! ordered rows instead of a scan.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session as DfSession, TableProvider};
use datafusion::common::{Constraints, DataFusionError};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use crate::catalog::{Catalog, Namespace, Relation};
use crate::state::table::PinnedRows;
use crate::state::TableState;

tokio::task_local! {
    /// While a view is restored at start-up: the column count each captured table had when
    /// the view was created, for tables that gained columns upstream since (see
    /// `TableSpec::widened`). Planning sees those tables that narrow, so a view defined with
    /// `SELECT *` keeps its columns across restarts, and one whose shape depended on a
    /// table's width (`SELECT * ... UNION ALL ...`) still plans.
    pub static CREATED_WIDTHS: HashMap<u64, usize>;

    /// The rows a query pinned, by table id (set around physical planning by the session).
    pub static PINNED: Arc<HashMap<u64, PinnedRows>>;
}

/// `column = constant` (either way round): the column's name and the constant.
fn equality(expr: &Expr) -> Option<(&str, &ScalarValue)> {
    let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = expr else { return None };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) if !v.is_null() => {
            Some((c.name.as_str(), v))
        }
        _ => None,
    }
}

/// A table with stored rows, as DataFusion sees it.
#[derive(Debug)]
pub struct LocalTable {
    state: Arc<TableState>,
    constraints: Constraints,
    column_defaults: Vec<(String, Expr)>,
}

/// The dataflow's way to the rows behind a view's scans: a [`LocalTable`]'s state.
pub struct LocalTables;

impl crate::dataflow::compile::ScanResolver for LocalTables {
    fn table_state(&self, provider: &dyn TableProvider) -> Option<Arc<TableState>> {
        provider.downcast_ref::<LocalTable>().map(|t| t.state.clone())
    }
}

impl LocalTable {
    /// The rows behind this provider.
    pub fn state(&self) -> &Arc<TableState> {
        &self.state
    }

    /// Constants bound by `filters` to a prefix of the table's order columns.
    fn lookup_prefix(&self, filters: &[Expr]) -> datafusion::error::Result<Vec<datafusion::arrow::array::ArrayRef>> {
        let schema = self.state.schema();
        let mut values = Vec::new();
        for col in self.state.order_columns() {
            let field = schema.field(col);
            let bound = filters.iter().filter_map(equality).find(|(name, _)| *name == field.name());
            let Some((_, value)) = bound else { break };
            let Ok(value) = value.cast_to(field.data_type()) else { break };
            values.push(value.to_array()?);
        }
        Ok(values)
    }

    /// Wraps a table's state with the parts of its definition the planner needs.
    pub fn new(state: Arc<TableState>, constraints: Constraints, column_defaults: Vec<(String, Expr)>) -> Self {
        LocalTable { state, constraints, column_defaults }
    }
}

#[async_trait]
impl TableProvider for LocalTable {
    fn schema(&self) -> SchemaRef {
        let full = self.state.schema();
        match CREATED_WIDTHS.try_with(|w| w.get(&self.state.id()).copied()) {
            Ok(Some(n)) if n < full.fields().len() => {
                Arc::new(datafusion::arrow::datatypes::Schema::new(full.fields()[..n].to_vec()))
            }
            _ => full,
        }
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.column_defaults.iter().find(|(c, _)| c == column).map(|(_, e)| e)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        let order = self.state.order_columns();
        let schema = self.state.schema();
        Ok(filters
            .iter()
            .map(|f| match equality(f) {
                Some((name, _)) if order.iter().any(|&c| schema.field(c).name() == name) => {
                    TableProviderFilterPushDown::Inexact
                }
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let id = self.state.id();
        let pinned = PINNED.try_with(|p| p.get(&id).cloned()).ok().flatten().unwrap_or_else(|| self.state.pin());
        // A view whose query fails on some rows answers with its error, not with rows.
        pinned.readable().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let prefix = self.lookup_prefix(filters)?;
        let batch =
            if prefix.is_empty() { self.state.snapshot_of(&pinned) } else { self.state.lookup(&pinned, &prefix) }
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // The pinned rows' own schema: the table may have gained columns since planning
        // (appended, so the plan's projection still picks the same ones).
        let schema = batch.schema();
        let exec = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, projection.cloned())?;
        Ok(exec)
    }
}

/// The `public` schema: every table and view in the catalog.
///
/// It holds the catalog weakly: datafusion-pg-catalog's `pg_catalog` schema keeps a strong
/// reference to DataFusion's catalog list, which contains it, so that list is never freed;
/// a strong reference here would keep the catalog, and with it the store's file lock, alive
/// after the engine is gone.
#[derive(Debug)]
pub struct PublicSchema {
    catalog: Weak<Catalog>,
}

impl PublicSchema {
    /// A schema provider reading `catalog`.
    pub fn new(catalog: &Arc<Catalog>) -> Self {
        PublicSchema { catalog: Arc::downgrade(catalog) }
    }

    fn catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.upgrade()
    }
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog().map(|c| c.relation_names()).unwrap_or_default()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let Some(catalog) = self.catalog() else {
            return Ok(None);
        };
        Ok(catalog.get(Namespace::Relation, name).and_then(|o| match o.relation {
            Some(Relation::Table { provider, .. }) => Some(provider),
            Some(Relation::View(v)) => Some(v),
            None => None,
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog().is_some_and(|c| c.get(Namespace::Relation, name).is_some())
    }
}
