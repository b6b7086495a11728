//! `pg_catalog.pg_class` with materialized views as `relkind = 'm'`.
//!
//! datafusion-pg-catalog derives `relkind` from DataFusion's `TableType`, which has no
//! materialized-view kind, so our views would show as tables (`r`): listed by psql's `\dt`,
//! missing from `\dm` and from SQLAlchemy's `get_materialized_view_names()`. This schema wraps
//! the crate's `pg_catalog` and rewrites `relkind` of `pg_class` rows that name a materialized
//! view; every other table passes through untouched.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::SchemaProvider;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::parser::ObjectType;
use crate::catalog::Catalog;

/// The `pg_catalog` schema, with `pg_class` corrected.
#[derive(Debug)]
pub struct PgCatalogWithMatviews {
    inner: Arc<dyn SchemaProvider>,
    catalog: Weak<Catalog>,
}

impl PgCatalogWithMatviews {
    /// Wraps the crate's `pg_catalog` schema.
    pub fn new(inner: Arc<dyn SchemaProvider>, catalog: &Arc<Catalog>) -> Self {
        PgCatalogWithMatviews { inner, catalog: Arc::downgrade(catalog) }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogWithMatviews {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        Ok(match table {
            Some(t) if name == "pg_class" => Some(Arc::new(PgClass { inner: t, catalog: self.catalog.clone() })),
            other => other,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[derive(Debug)]
struct PgClass {
    inner: Arc<dyn TableProvider>,
    catalog: Weak<Catalog>,
}

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
        let views: HashSet<String> = self
            .catalog
            .upgrade()
            .map(|c| c.list(ObjectType::MaterializedView).into_iter().map(|o| o.entry.name).collect())
            .unwrap_or_default();
        let schema = self.inner.schema();
        let batches = batches.into_iter().map(|b| mark_views(&schema, b, &views)).collect::<DfResult<Vec<_>>>()?;
        MemTable::try_new(schema, vec![batches])?.scan(state, projection, filters, limit).await
    }
}

/// `relkind = 'm'` for the rows whose `relname` is a materialized view.
fn mark_views(schema: &SchemaRef, batch: RecordBatch, views: &HashSet<String>) -> DfResult<RecordBatch> {
    let (Ok(name_idx), Ok(kind_idx)) = (schema.index_of("relname"), schema.index_of("relkind")) else {
        return Ok(batch);
    };
    let names = batch.column(name_idx).as_any().downcast_ref::<StringArray>().cloned();
    let kinds = batch.column(kind_idx).as_any().downcast_ref::<StringArray>().cloned();
    let (Some(names), Some(kinds)) = (names, kinds) else { return Ok(batch) };
    let marked: StringArray = (0..kinds.len())
        .map(|i| {
            if kinds.is_null(i) {
                None
            } else if !names.is_null(i) && views.contains(names.value(i)) {
                Some("m")
            } else {
                Some(kinds.value(i))
            }
        })
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[kind_idx] = Arc::new(marked);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
