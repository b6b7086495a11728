//! `pg_tables`: the crate lists every relation of every schema; Postgres lists tables only
//! (`relkind` r and p), so views and materialized views are left out.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::{str_column, Overlay};
use crate::sql::parser::ObjectType;

#[derive(Debug)]
pub struct PgTables {
    pub inner: Arc<dyn TableProvider>,
    pub shared: Arc<Overlay>,
}

#[async_trait]
impl TableProvider for PgTables {
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
        let views: HashSet<String> = match self.shared.catalog.upgrade() {
            Some(c) => [ObjectType::View, ObjectType::MaterializedView]
                .into_iter()
                .flat_map(|t| c.list(t))
                .map(|o| o.entry.name)
                .collect(),
            None => HashSet::new(),
        };
        let mut batches = Vec::new();
        for b in self.shared.scan_inner("pg_tables", state).await? {
            let (Some(schemas), Some(names)) = (str_column(&b, "schemaname"), str_column(&b, "tablename")) else {
                batches.push(b);
                continue;
            };
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| Some(schemas.value(i) != "public" || !views.contains(names.value(i))))
                .collect();
            batches.push(filter_record_batch(&b, &keep)?);
        }
        MemTable::try_new(self.schema(), vec![batches])?.scan(state, projection, filters, limit).await
    }
}

/// `pg_views` / `pg_matviews`: the crate's are empty; ours list the `public` views and
/// materialized views with their defining query (what follows `AS` in their statement).
#[derive(Debug)]
pub struct PgViews {
    pub inner: Arc<dyn TableProvider>,
    pub shared: Arc<Overlay>,
    pub materialized: bool,
}

/// The query of a `CREATE [MATERIALIZED] VIEW name [(columns)] AS query` statement.
fn definition(create_sql: &str) -> String {
    let upper = create_sql.to_ascii_uppercase();
    match upper.find(" AS ") {
        Some(i) => create_sql[i + 4..].trim().to_string(),
        None => create_sql.to_string(),
    }
}

#[async_trait]
impl TableProvider for PgViews {
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
        use datafusion::scalar::ScalarValue;
        let kind = if self.materialized { ObjectType::MaterializedView } else { ObjectType::View };
        let views = self.shared.catalog.upgrade().map(|c| c.list(kind)).unwrap_or_default();
        let name_column = if self.materialized { "matviewname" } else { "viewname" };
        let owner_column = if self.materialized { "matviewowner" } else { "viewowner" };
        let rows: Vec<Vec<(&str, ScalarValue)>> = views
            .iter()
            .map(|v| {
                let mut row = vec![
                    ("schemaname", ScalarValue::from("public")),
                    (name_column, ScalarValue::from(v.entry.name.as_str())),
                    (owner_column, ScalarValue::from("headwater")),
                    ("definition", ScalarValue::from(definition(&v.entry.create_sql))),
                ];
                if self.materialized {
                    row.push(("hasindexes", ScalarValue::Boolean(Some(false))));
                    row.push(("ispopulated", ScalarValue::Boolean(Some(true))));
                }
                row
            })
            .collect();
        let batch = super::batch_of(&self.schema(), &rows)?;
        MemTable::try_new(self.schema(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}
