//! DataFusion's view of the catalog: the `public` schema and the table providers behind it.
//!
//! [`PublicSchema`] answers DataFusion's name lookups from the [`Catalog`]; a table is a
//! [`LocalTable`] whose scan is an in-memory execution plan over the table's current
//! snapshot ([`TableState::snapshot`]), so a query sees each table as of one commit.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session as DfSession, TableProvider};
use datafusion::common::{Constraints, DataFusionError};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::{Catalog, Namespace, Relation};
use crate::state::TableState;

/// A table with stored rows, as DataFusion sees it.
#[derive(Debug)]
pub struct LocalTable {
    state: Arc<TableState>,
    constraints: Constraints,
    column_defaults: Vec<(String, Expr)>,
}

impl LocalTable {
    /// Wraps a table's state with the parts of its definition the planner needs.
    pub fn new(state: Arc<TableState>, constraints: Constraints, column_defaults: Vec<(String, Expr)>) -> Self {
        LocalTable { state, constraints, column_defaults }
    }
}

#[async_trait]
impl TableProvider for LocalTable {
    fn schema(&self) -> SchemaRef {
        self.state.schema()
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

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batch = self.state.snapshot().map_err(|e| DataFusionError::External(Box::new(e)))?;
        let exec = MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())?;
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
