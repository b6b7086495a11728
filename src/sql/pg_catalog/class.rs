//! `pg_class` and `pg_attribute`: the crate's rows, corrected and completed for our relations.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use super::{batch_of, int_column, oids, str_column, Overlay, PublicRelation};
use crate::sql::parser::ObjectType;

/// `pg_class`: materialized views as `relkind = 'm'` (the crate shows them as tables, `r`),
/// `relhasindex` on tables with a primary key, and a `relkind = 'i'` row per primary key.
#[derive(Debug)]
pub struct PgClass {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    shared: Arc<Overlay>,
}

impl PgClass {
    pub fn new(inner: Arc<dyn TableProvider>, shared: Arc<Overlay>) -> Self {
        // `reloptions` (always NULL here), which the crate leaves out and SQLAlchemy reads.
        let mut fields: Vec<Field> = inner.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("reloptions", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true));
        // `relacl` (psql's `\dp`): the grants, as `aclitem` text.
        fields.push(Field::new("relacl", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true));
        PgClass { inner, schema: Arc::new(Schema::new(fields)), shared }
    }
}

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
        let relations = self.shared.public_relations(state).await?;
        let by_oid: HashMap<i32, &PublicRelation> = relations.iter().map(|r| (r.oid, r)).collect();
        let schema = self.schema.clone();
        let mut batches = Vec::new();
        for b in self.shared.scan_inner("pg_class", state).await? {
            batches.push(correct(&schema, b, &by_oid)?);
        }
        let indexes: Vec<Vec<(&str, ScalarValue)>> = relations
            .iter()
            .filter_map(|r| r.key.as_ref().map(|k| (r, k)))
            .map(|(r, key)| {
                vec![
                    ("oid", ScalarValue::Int32(Some(oids::index_oid(r.oid)))),
                    ("relname", ScalarValue::from(format!("{}_pkey", r.name))),
                    ("relnamespace", ScalarValue::Int32(Some(r.namespace))),
                    ("relowner", ScalarValue::Int32(Some(10))),
                    ("relam", ScalarValue::Int32(Some(403))),
                    ("relfilenode", ScalarValue::Int32(Some(oids::index_oid(r.oid)))),
                    ("relpersistence", ScalarValue::from("p")),
                    ("relkind", ScalarValue::from("i")),
                    ("relnatts", ScalarValue::Int16(Some(key.len() as i16))),
                    ("relispopulated", ScalarValue::Boolean(Some(true))),
                    ("relreplident", ScalarValue::from("n")),
                ]
            })
            .collect();
        if !indexes.is_empty() {
            batches.push(batch_of(&schema, &indexes)?);
        }
        MemTable::try_new(schema, vec![batches])?.scan(state, projection, filters, limit).await
    }
}

/// Sets `relkind` and `relhasindex` of our relations' rows.
fn correct(schema: &SchemaRef, batch: RecordBatch, ours: &HashMap<i32, &PublicRelation>) -> DfResult<RecordBatch> {
    let missing = || datafusion::error::DataFusionError::Internal("pg_class: unexpected columns".into());
    let oids = int_column(&batch, "oid").ok_or_else(missing)?;
    let (kind_idx, index_idx) = (schema.index_of("relkind")?, schema.index_of("relhasindex")?);
    let kinds = str_column(&batch, "relkind").ok_or_else(missing)?;
    let has_index = batch.column(index_idx).as_any().downcast_ref::<BooleanArray>().ok_or_else(missing)?;
    let ours_at = |i: usize| ours.get(&oids.value(i));
    let kinds: StringArray = (0..batch.num_rows())
        .map(|i| match ours_at(i) {
            Some(r) if r.kind == Some(ObjectType::MaterializedView) => Some("m"),
            _ => (!kinds.is_null(i)).then(|| kinds.value(i)),
        })
        .collect();
    let has_index: BooleanArray = (0..batch.num_rows())
        .map(|i| Some(ours_at(i).is_some_and(|r| r.key.is_some()) || (!has_index.is_null(i) && has_index.value(i))))
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[kind_idx] = Arc::new(kinds);
    columns[index_idx] = Arc::new(has_index);
    columns.push(datafusion::arrow::array::new_null_array(
        schema.field(schema.fields().len() - 2).data_type(),
        batch.num_rows(),
    ));
    let acls: Vec<ScalarValue> = (0..batch.num_rows())
        .map(|i| match ours_at(i).and_then(|r| r.acl.as_ref()) {
            Some(items) => {
                let items: Vec<ScalarValue> = items.iter().map(|s| ScalarValue::Utf8(Some(s.clone()))).collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
            }
            None => {
                ScalarValue::try_from(schema.field(schema.fields().len() - 1).data_type()).unwrap_or(ScalarValue::Null)
            }
        })
        .collect();
    columns.push(if acls.is_empty() {
        datafusion::arrow::array::new_empty_array(schema.field(schema.fields().len() - 1).data_type())
    } else {
        ScalarValue::iter_to_array(acls)?
    });
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `pg_attribute` with `atttypmod` set for `numeric(p,s)` columns of our relations, so
/// `format_type()` (psql `\d`, SQLAlchemy) shows the declared precision and scale.
#[derive(Debug)]
pub struct PgAttribute {
    inner: Arc<dyn TableProvider>,
    shared: Arc<Overlay>,
}

impl PgAttribute {
    pub fn new(inner: Arc<dyn TableProvider>, shared: Arc<Overlay>) -> Self {
        PgAttribute { inner, shared }
    }
}

#[async_trait]
impl TableProvider for PgAttribute {
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
        let relations = self.shared.public_relations(state).await?;
        let provider = self.shared.catalog.upgrade();
        // (relation oid, attnum) → (type oid if not the crate's, typmod), for every decimal
        // or marked text column (json, varchar(n), ...) of a public relation.
        let mut typmods: HashMap<(i32, i16), (Option<i32>, i32)> = HashMap::new();
        for r in &relations {
            let schema = match &r.schema {
                Some(s) => Some(s.clone()),
                None => match provider.as_ref().and_then(|c| c.get(crate::catalog::Namespace::Relation, &r.name)) {
                    Some(o) => match o.relation {
                        Some(crate::catalog::Relation::View(p)) => Some(p.schema()),
                        Some(crate::catalog::Relation::Table { provider, .. }) => Some(provider.schema()),
                        None => None,
                    },
                    None => None,
                },
            };
            for (i, f) in schema.iter().flat_map(|s| s.fields().iter().cloned().enumerate().collect::<Vec<_>>()) {
                if let DataType::Decimal128(p, s) | DataType::Decimal256(p, s) = f.data_type() {
                    typmods.insert((r.oid, i as i16 + 1), (None, ((*p as i32) << 16 | (*s as i32 & 0xffff)) + 4));
                }
                if let Some(t) = crate::types::PgText::of(&f) {
                    typmods.insert((r.oid, i as i16 + 1), (Some(t.oid() as i32), t.typmod()));
                }
            }
        }
        let schema = self.inner.schema();
        let mut batches = Vec::new();
        for b in self.shared.scan_inner("pg_attribute", state).await? {
            batches.push(with_typmods(&schema, b, &typmods)?);
        }
        MemTable::try_new(schema, vec![batches])?.scan(state, projection, filters, limit).await
    }
}

fn with_typmods(
    schema: &SchemaRef,
    batch: RecordBatch,
    typmods: &HashMap<(i32, i16), (Option<i32>, i32)>,
) -> DfResult<RecordBatch> {
    let (Some(rel), Ok(typmod_idx)) = (int_column(&batch, "attrelid"), schema.index_of("atttypmod")) else {
        return Ok(batch);
    };
    let nums = batch.column_by_name("attnum").and_then(|c| c.as_any().downcast_ref::<Int16Array>());
    let current = batch.column(typmod_idx).as_any().downcast_ref::<Int32Array>();
    let (Some(nums), Some(current)) = (nums, current) else { return Ok(batch) };
    let updated: Int32Array = (0..batch.num_rows())
        .map(|i| Some(typmods.get(&(rel.value(i), nums.value(i))).map_or(current.value(i), |t| t.1)))
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[typmod_idx] = Arc::new(updated);
    let typid = schema.index_of("atttypid").ok();
    if let Some(typ) = typid.and_then(|t| batch.column(t).as_any().downcast_ref::<Int32Array>()) {
        let retyped: Int32Array = (0..batch.num_rows())
            .map(|i| {
                let own = typmods.get(&(rel.value(i), nums.value(i))).and_then(|t| t.0);
                Some(own.unwrap_or(typ.value(i)))
            })
            .collect();
        columns[typid.unwrap_or_default()] = Arc::new(retyped);
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
