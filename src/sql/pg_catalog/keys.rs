//! `pg_index` and `pg_constraint`: the primary keys of our tables.
//!
//! The crate's versions are a static dump of a Postgres 17 server's own catalog, whose oids
//! name nothing here; these tables list instead one unique, primary index `<table>_pkey` and
//! its `PRIMARY KEY` constraint per table that has a key (upstream MySQL tables have their
//! upstream key). The vector columns (`indkey`, `indclass`, `indoption`, `indcollation`,
//! `conkey`) are arrays, so clients can `unnest()` them.

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

/// The crate's schema with the named vector columns as arrays (`int2[]`, `oid[]`).
fn with_arrays(schema: SchemaRef, columns: &[(&str, DataType)]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match columns.iter().find(|(c, _)| c == f.name()) {
            Some((c, t)) => Field::new(*c, DataType::List(Arc::new(Field::new("item", t.clone(), true))), true),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn int2_list_zeros(n: usize) -> ScalarValue {
    let values = vec![ScalarValue::Int16(Some(0)); n];
    ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int16))
}

fn int4_list(values: impl Iterator<Item = i32>) -> ScalarValue {
    let values: Vec<ScalarValue> = values.map(|v| ScalarValue::Int32(Some(v))).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int32))
}

impl PrimaryKeys {
    pub fn index(crate_schema: SchemaRef, shared: Arc<Overlay>) -> Self {
        let arrays = [
            ("indkey", DataType::Int16),
            ("indcollation", DataType::Int32),
            ("indclass", DataType::Int32),
            ("indoption", DataType::Int16),
        ];
        PrimaryKeys { kind: Kind::Index, schema: with_arrays(crate_schema, &arrays), shared }
    }

    pub fn constraint(crate_schema: SchemaRef, shared: Arc<Overlay>) -> Self {
        PrimaryKeys {
            kind: Kind::Constraint,
            schema: with_arrays(crate_schema, &[("conkey", DataType::Int16), ("confkey", DataType::Int16)]),
            shared,
        }
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
                        ("indcollation", int4_list(key.iter().map(|_| 0))),
                        // The default btree operator class of int8 (any will do: no client reads it).
                        ("indclass", int4_list(key.iter().map(|_| 1978))),
                        ("indoption", int2_list_zeros(key.len())),
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
