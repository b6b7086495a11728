//! Driver queries answered without DataFusion, because they are fixed texts DataFusion
//! cannot plan and their answer is known from the type system alone.
//!
//! asyncpg's type introspection: when a result has a type asyncpg has no built-in codec for
//! (`int8[]`, for one), it runs a recursive CTE over `pg_type` with correlated subqueries
//! (`INTRO_LOOKUP_TYPES`, recognised by its `typeinfo_tree`), asking for the oids in `$1`.
//! Every type Headwater produces is a built-in Postgres type, so the answer comes from
//! pgwire's type table: each asked type and, for arrays, its element type.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use pgwire::api::Type;
use postgres_types::Kind;

use super::QueryResult;
use crate::error::{Error, Result};

/// A driver query recognised by its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientQuery {
    /// asyncpg's `INTRO_LOOKUP_TYPES`.
    AsyncpgTypes,
}

/// Recognises a driver query.
pub fn recognise(sql: &str) -> Option<ClientQuery> {
    (sql.contains("WITH RECURSIVE typeinfo_tree(") && sql.contains("range_subtype"))
        .then_some(ClientQuery::AsyncpgTypes)
}

fn char_field(name: &str) -> Field {
    // arrow-pg reports a field with this marker as Postgres' one-byte "char" (asyncpg
    // compares `kind` with b'b').
    Field::new(name, DataType::Utf8, true)
        .with_metadata(HashMap::from([(arrow_pg::datatypes::PG_CHAR_KEY.to_string(), "true".to_string())]))
}

fn list(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

impl ClientQuery {
    /// The parameter types (the wire reports `$1` as `oid[]`: see `pgwire::handler`).
    pub fn parameters(self) -> Vec<Option<DataType>> {
        vec![Some(list(DataType::Int64))]
    }

    /// The result columns.
    pub fn schema(self) -> SchemaRef {
        let int = |n: &str| Field::new(n, DataType::Int32, true);
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        Arc::new(Schema::new(vec![
            int("oid"),
            text("ns"),
            text("name"),
            char_field("kind"),
            int("basetype"),
            int("elemtype"),
            char_field("elemdelim"),
            int("range_subtype"),
            // Always NULL (no composite types); text[] because asyncpg decodes that without
            // introspecting (it has built-in codecs for text[] and oid[] only).
            Field::new("attrtypoids", list(DataType::Utf8), true),
            Field::new("attrnames", list(DataType::Utf8), true),
            int("depth"),
            text("basetype_name"),
            text("elemtype_name"),
            text("range_subtype_name"),
        ]))
    }

    /// Runs the query with the client's parameters.
    pub fn execute(self, params: Option<&ParamValues>) -> Result<QueryResult> {
        let asked: Vec<u32> = match params {
            Some(ParamValues::List(values)) => match values.first().map(|v| &v.value) {
                Some(ScalarValue::List(l)) => (0..l.values().len())
                    .filter_map(|i| ScalarValue::try_from_array(l.values(), i).ok())
                    .filter_map(|v| match v.cast_to(&DataType::Int64) {
                        Ok(ScalarValue::Int64(Some(n))) => u32::try_from(n).ok(),
                        _ => None,
                    })
                    .collect(),
                _ => vec![],
            },
            _ => return Err(Error::Syntax("the type introspection query needs its $1 parameter".into())),
        };
        // (type, depth): the asked types at 0, their element types at 1.
        let mut rows: Vec<(Type, i32)> = Vec::new();
        for oid in asked {
            let Some(t) = Type::from_oid(oid) else { continue };
            if let Kind::Array(element) = t.kind() {
                rows.push((element.clone(), 1));
            }
            rows.push((t, 0));
        }
        rows.sort_by_key(|(t, depth)| (-depth, t.oid()));
        rows.dedup_by_key(|(t, _)| t.oid());
        let schema = self.schema();
        let n = rows.len();
        let element = |t: &Type| match t.kind() {
            Kind::Array(e) => Some(e.clone()),
            _ => None,
        };
        let kind = |t: &Type| match t.kind() {
            Kind::Pseudo => "p",
            Kind::Enum(_) => "e",
            Kind::Range(_) => "r",
            Kind::Multirange(_) => "m",
            Kind::Domain(_) => "d",
            Kind::Composite(_) => "c",
            _ => "b",
        };
        let ints = |f: &dyn Fn(&Type, i32) -> Option<i32>| -> ArrayRef {
            Arc::new(rows.iter().map(|(t, d)| f(t, *d)).collect::<datafusion::arrow::array::Int32Array>())
        };
        let texts = |f: &dyn Fn(&Type) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(|(t, _)| f(t)).collect::<datafusion::arrow::array::StringArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            ints(&|t, _| Some(t.oid() as i32)),
            texts(&|t| Some(t.schema().to_string())),
            texts(&|t| Some(t.name().to_string())),
            texts(&|t| Some(kind(t).to_string())),
            ints(&|_, _| None),
            ints(&|t, _| element(t).map(|e| e.oid() as i32)),
            texts(&|t| element(t).map(|_| ",".to_string())),
            ints(&|_, _| None),
            datafusion::arrow::array::new_null_array(&list(DataType::Utf8), n),
            datafusion::arrow::array::new_null_array(&list(DataType::Utf8), n),
            ints(&|_, d| Some(d)),
            texts(&|_| None),
            texts(&|t| element(t).map(|e| e.name().to_string())),
            texts(&|_| None),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(QueryResult::from_batches(schema, vec![batch]))
    }
}
