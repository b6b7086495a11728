//! `pg_index` and `pg_constraint`: the primary keys of our tables.
//!
//! The crate's versions are a static dump of a Postgres 17 server's own catalog, whose oids
//! name nothing here; these tables list instead one unique, primary index `<table>_pkey` and
//! its `PRIMARY KEY` constraint per table that has a key (upstream MySQL tables have their
//! upstream key). `indkey` and `conkey` are `int2[]` (Postgres: `int2vector`, `int2[]`) so
//! clients can `unnest()` them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use super::{batch_of, int2_list, oids, Overlay};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Index,
    Constraint,
}

/// `pg_index` or `pg_constraint` over our tables' primary keys.
#[derive(Debug)]
pub struct PrimaryKeys {
    kind: Kind,
    schema: SchemaRef,
    shared: Arc<Overlay>,
}

/// The crate's schema with `column` as `int2[]`.
fn with_int2_array(schema: SchemaRef, column: &str) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == column {
                Field::new(column, DataType::List(Arc::new(Field::new("item", DataType::Int16, true))), true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

impl PrimaryKeys {
    pub fn index(crate_schema: SchemaRef, shared: Arc<Overlay>) -> Self {
        PrimaryKeys { kind: Kind::Index, schema: with_int2_array(crate_schema, "indkey"), shared }
    }

    pub fn constraint(crate_schema: SchemaRef, shared: Arc<Overlay>) -> Self {
        PrimaryKeys { kind: Kind::Constraint, schema: with_int2_array(crate_schema, "conkey"), shared }
    }
}

#[async_trait]
impl TableProvider for PrimaryKeys {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let relations = self.shared.public_relations(state).await?;
        let rows: Vec<Vec<(&str, ScalarValue)>> = relations
            .iter()
            .filter_map(|r| r.key.as_ref().map(|k| (r, k)))
            .map(|(r, key)| {
                let int = |v: i32| ScalarValue::Int32(Some(v));
                let yes = ScalarValue::Boolean(Some(true));
                let n = ScalarValue::Int16(Some(key.len() as i16));
                match self.kind {
                    Kind::Index => vec![
                        ("indexrelid", int(oids::index_oid(r.oid))),
                        ("indrelid", int(r.oid)),
                        ("indnatts", n.clone()),
                        ("indnkeyatts", n),
                        ("indisunique", yes.clone()),
                        ("indisprimary", yes.clone()),
                        ("indimmediate", yes.clone()),
                        ("indisvalid", yes.clone()),
                        ("indisready", yes.clone()),
                        ("indislive", yes),
                        ("indkey", int2_list(key)),
                        ("indcollation", ScalarValue::from(vec!["0"; key.len()].join(" "))),
                        ("indclass", ScalarValue::from(vec!["1978"; key.len()].join(" "))),
                        ("indoption", ScalarValue::from(vec!["0"; key.len()].join(" "))),
                    ],
                    Kind::Constraint => vec![
                        ("oid", int(oids::constraint_oid(r.oid))),
                        ("conname", ScalarValue::from(format!("{}_pkey", r.name))),
                        ("connamespace", int(r.namespace)),
                        ("contype", ScalarValue::from("p")),
                        ("convalidated", yes.clone()),
                        ("conrelid", int(r.oid)),
                        ("conindid", int(oids::index_oid(r.oid))),
                        ("confupdtype", ScalarValue::from(" ")),
                        ("confdeltype", ScalarValue::from(" ")),
                        ("confmatchtype", ScalarValue::from(" ")),
                        ("conislocal", yes),
                        ("conkey", int2_list(key)),
                    ],
                }
            })
            .collect();
        let batch = batch_of(&self.schema, &rows)?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}
