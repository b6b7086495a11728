//! Headwater's overlay on datafusion-pg-catalog's `pg_catalog`: what the crate cannot know.
//!
//! The crate derives `pg_class` and `pg_attribute` from DataFusion's schemas, which carry no
//! materialized-view kind, no primary keys and no type modifiers, and its `pg_index` and
//! `pg_constraint` are a static dump of a Postgres 17 server's own catalog. psql's `\d`, `\dm`,
//! SQLAlchemy's inspector, JDBC's `getPrimaryKeys` and BI tools read exactly those, so this
//! schema wraps the crate's and replaces seven tables:
//!
//! - `pg_class` ([`class`]): `relkind = 'm'` for materialized views, `relhasindex` for tables
//!   with a primary key, plus one `relkind = 'i'` row per primary key index (`<table>_pkey`);
//! - `pg_attribute` ([`class`]): `atttypmod` of `numeric(p,s)` columns;
//! - `pg_index`, `pg_constraint` ([`keys`]): one row per primary key of our tables, with
//!   `indkey`/`conkey` as `int2[]` so `unnest()` works on them.
//!
//! - `pg_tables` ([`tables`]): without views and materialized views; `pg_views` and
//!   `pg_matviews` (empty in the crate) list them, with their queries.
//!
//! Every other table passes through. Object ids: the crate numbers relations itself; a
//! primary key's index and constraint get ids derived from their table's ([`oids`]), and the
//! functions that take an oid (`pg_get_viewdef`, `pg_get_indexdef`, `pg_get_constraintdef`,
//! [`functions`]) map it back to a relation by name through [`oids::RelationOids`], which every
//! `pg_class` scan refreshes.

mod class;
pub mod functions;
pub mod information_schema;
mod keys;
pub mod oids;
pub mod privileges;
pub mod stat_activity;
mod tables;

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::scalar::ScalarValue;

use crate::catalog::{Catalog, Relation};
use crate::sql::activity::Activity;
use crate::sql::parser::ObjectType;
use oids::RelationOids;

/// What the overlay tables share.
#[derive(Debug)]
pub struct Overlay {
    inner: Arc<dyn SchemaProvider>,
    catalog: Weak<Catalog>,
    oids: Arc<RelationOids>,
    activity: Weak<Activity>,
}

/// The `pg_catalog` schema with Headwater's tables in place of the crate's.
#[derive(Debug)]
pub struct PgCatalogOverlay {
    shared: Arc<Overlay>,
}

impl PgCatalogOverlay {
    /// Wraps the crate's `pg_catalog` schema.
    pub fn new(
        inner: Arc<dyn SchemaProvider>,
        catalog: &Arc<Catalog>,
        oids: Arc<RelationOids>,
        activity: &Arc<Activity>,
    ) -> Self {
        let activity = Arc::downgrade(activity);
        PgCatalogOverlay { shared: Arc::new(Overlay { inner, catalog: Arc::downgrade(catalog), oids, activity }) }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.shared.inner.table_names();
        names.push(STAT_ACTIVITY.to_string());
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name == STAT_ACTIVITY {
            return Ok(Some(Arc::new(stat_activity::StatActivity { activity: self.shared.activity.clone() })));
        }
        let Some(inner) = self.shared.inner.table(name).await? else { return Ok(None) };
        let shared = self.shared.clone();
        Ok(Some(match name {
            "pg_class" => Arc::new(class::PgClass::new(inner, shared)),
            "pg_attribute" => Arc::new(class::PgAttribute::new(inner, shared)),
            "pg_index" => Arc::new(keys::PrimaryKeys::index(inner.schema(), shared)),
            "pg_constraint" => Arc::new(keys::PrimaryKeys::constraint(inner.schema(), shared)),
            "pg_tables" => Arc::new(tables::PgTables { inner, shared }),
            "pg_views" => Arc::new(tables::PgViews { inner, shared, materialized: false }),
            "pg_matviews" => Arc::new(tables::PgViews { inner, shared, materialized: true }),
            _ => inner,
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        name == STAT_ACTIVITY || self.shared.inner.table_exist(name)
    }
}

/// The sessions table, which the crate does not have.
const STAT_ACTIVITY: &str = "pg_stat_activity";

/// One relation of the `public` schema as the crate's `pg_class` numbers it.
#[derive(Debug, Clone)]
pub struct PublicRelation {
    pub oid: i32,
    pub namespace: i32,
    pub name: String,
    /// The primary key's columns (0-based), for tables that have one.
    pub key: Option<Vec<usize>>,
    pub schema: Option<SchemaRef>,
    pub kind: Option<ObjectType>,
    /// `relacl`: `None` while nothing was granted (default privileges).
    pub acl: Option<Vec<String>>,
}

impl Overlay {
    /// Scans one of the crate's tables in full.
    async fn scan_inner(&self, table: &str, state: &dyn Session) -> DfResult<Vec<RecordBatch>> {
        let Some(t) = self.inner.table(table).await? else { return Ok(vec![]) };
        let plan = t.scan(state, None, &[], None).await?;
        datafusion::physical_plan::collect(plan, state.task_ctx()).await
    }

    /// The relations of `public` with their crate-assigned oids; refreshes [`RelationOids`].
    async fn public_relations(&self, state: &dyn Session) -> DfResult<Vec<PublicRelation>> {
        let mut public_ns = None;
        for b in self.scan_inner("pg_namespace", state).await? {
            let (oids, names) = (int_column(&b, "oid"), str_column(&b, "nspname"));
            if let (Some(oids), Some(names)) = (oids, names) {
                for i in 0..b.num_rows() {
                    if names.value(i) == "public" {
                        public_ns = Some(oids.value(i));
                    }
                }
            }
        }
        let catalog = self.catalog.upgrade();
        let mut out = Vec::new();
        for b in self.scan_inner("pg_class", state).await? {
            let (Some(oids), Some(ns), Some(names)) =
                (int_column(&b, "oid"), int_column(&b, "relnamespace"), str_column(&b, "relname"))
            else {
                continue;
            };
            for i in 0..b.num_rows() {
                if Some(ns.value(i)) != public_ns {
                    continue;
                }
                let name = names.value(i).to_string();
                let object = catalog.as_ref().and_then(|c| c.get(crate::catalog::Namespace::Relation, &name));
                let (key, schema) = match object.as_ref().and_then(|o| o.relation.as_ref()) {
                    Some(Relation::Table { state, .. }) => {
                        (state.key_columns().map(<[usize]>::to_vec), Some(state.schema()))
                    }
                    _ => (None, None),
                };
                let acl = match (&catalog, &object) {
                    (Some(c), Some(o)) => crate::sql::access::acl_items(c, o),
                    _ => None,
                };
                let kind = object.map(|o| o.object_type());
                // Only tables have primary keys (a materialized view's stored key is internal).
                let key = key.filter(|_| kind == Some(ObjectType::Table));
                out.push(PublicRelation { oid: oids.value(i), namespace: ns.value(i), name, key, schema, kind, acl });
            }
        }
        self.oids.refresh(&out);
        Ok(out)
    }
}

fn int_column<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Int32Array> {
    b.column_by_name(name)?.as_any().downcast_ref::<Int32Array>()
}

fn str_column<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    b.column_by_name(name)?.as_any().downcast_ref::<StringArray>()
}

/// A batch of `schema` from rows given as (column, value) pairs; columns a row leaves out
/// are NULL when nullable, else the type's zero (0, false, '', empty array).
fn batch_of(schema: &SchemaRef, rows: &[Vec<(&str, ScalarValue)>]) -> DfResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let values = rows
                .iter()
                .map(|row| match row.iter().find(|(n, _)| *n == field.name()) {
                    Some((_, v)) => v.cast_to(field.data_type()),
                    None if field.is_nullable() => ScalarValue::try_from(field.data_type()),
                    None => ScalarValue::new_default(field.data_type()),
                })
                .collect::<DfResult<Vec<_>>>()?;
            if values.is_empty() {
                Ok(datafusion::arrow::array::new_empty_array(field.data_type()))
            } else {
                ScalarValue::iter_to_array(values)
            }
        })
        .collect::<DfResult<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `int2[]` of 1-based column numbers.
fn int2_list(columns: &[usize]) -> ScalarValue {
    let values: Vec<ScalarValue> = columns.iter().map(|c| ScalarValue::Int16(Some(*c as i16 + 1))).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int16))
}
