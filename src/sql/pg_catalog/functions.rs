//! Catalog functions clients call that the crate lacks or cannot answer for our relations:
//! `pg_get_viewdef`, `pg_get_indexdef`, `pg_get_constraintdef` (psql `\d`, `\d+`,
//! SQLAlchemy), `col_description`, `obj_description`, `shobj_description` (no comments in
//! Headwater: NULL), `pg_function_is_visible` (psql `\df`), `pg_get_serial_sequence` (no
//! sequences: NULL).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::oids::{kind_of, OidKind, RelationOids};
use crate::catalog::{Catalog, Namespace, Relation};

type RowFn = dyn Fn(&[ScalarValue]) -> ScalarValue + Send + Sync;

/// A scalar function evaluated row by row over [`ScalarValue`]s (catalog queries are small).
struct RowFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    f: Arc<RowFn>,
}

impl std::fmt::Debug for RowFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowFunction({})", self.name)
    }
}

impl PartialEq for RowFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowFunction {}

impl Hash for RowFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for RowFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let n = if all_scalar { 1 } else { rows };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let row = arrays.iter().map(|a| ScalarValue::try_from_array(a, i)).collect::<DfResult<Vec<_>>>()?;
            out.push((self.f)(&row).cast_to(&self.returns)?);
        }
        if all_scalar {
            Ok(ColumnarValue::Scalar(out.pop().unwrap_or(ScalarValue::try_from(&self.returns)?)))
        } else {
            Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
        }
    }
}

pub(in crate::sql) fn udf(
    name: &'static str,
    arities: &[usize],
    returns: DataType,
    f: impl Fn(&[ScalarValue]) -> ScalarValue + Send + Sync + 'static,
) -> ScalarUDF {
    let signature = Signature::one_of(arities.iter().map(|n| TypeSignature::Any(*n)).collect(), Volatility::Stable);
    ScalarUDF::new_from_impl(RowFunction { name, signature, returns, f: Arc::new(f) })
}

/// An oid argument: an integer, or text holding one (`'16388'::oid` may arrive as text).
pub(in crate::sql) fn oid_arg(v: &ScalarValue) -> Option<i32> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.parse().ok(),
        v if v.is_null() => None,
        v => match v.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(n)) => i32::try_from(n).ok(),
            _ => None,
        },
    }
}

fn text(s: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(s)
}

/// Registers the functions on the engine's template context.
pub fn register(ctx: &SessionContext, catalog: &Arc<Catalog>, oids: &Arc<RelationOids>) {
    let lookup = Lookup { catalog: Arc::downgrade(catalog), oids: oids.clone() };
    let l = lookup.clone();
    ctx.register_udf(udf("pg_get_viewdef", &[1, 2], DataType::Utf8, move |a| text(l.viewdef(&a[0]))));
    let l = lookup.clone();
    ctx.register_udf(udf("pg_get_indexdef", &[1, 3], DataType::Utf8, move |a| {
        let column = a.get(1).and_then(oid_arg).unwrap_or(0);
        text(oid_arg(&a[0]).and_then(|oid| l.indexdef(oid, column)))
    }));
    let l = lookup.clone();
    ctx.register_udf(udf("pg_get_constraintdef", &[1, 2], DataType::Utf8, move |a| {
        text(oid_arg(&a[0]).and_then(|oid| l.constraintdef(oid)))
    }));
    for (name, arities) in [("col_description", &[2][..]), ("obj_description", &[1, 2]), ("shobj_description", &[2])] {
        ctx.register_udf(udf(name, arities, DataType::Utf8, |_| ScalarValue::Utf8(None)));
    }
    ctx.register_udf(udf("pg_get_serial_sequence", &[2], DataType::Utf8, |_| ScalarValue::Utf8(None)));
    // Functions (psql `\df`): Headwater has no user-defined functions; these describe none.
    for name in ["pg_get_function_result", "pg_get_function_arguments", "pg_get_function_identity_arguments"] {
        ctx.register_udf(udf(name, &[1], DataType::Utf8, |_| ScalarValue::Utf8(None)));
    }
    // Sizes (psql `\dt+`, BI tools' table lists): the bytes a table's or materialized
    // view's rows hold in memory (`hw_catalog.relations.memory_bytes` without a view's
    // operator state); there are no indexes besides the key, and no database-wide figure.
    for name in ["pg_table_size", "pg_relation_size", "pg_total_relation_size"] {
        let l = lookup.clone();
        ctx.register_udf(udf(name, &[1, 2], DataType::Int64, move |a| ScalarValue::Int64(l.size(&a[0]))));
    }
    for name in ["pg_database_size", "pg_indexes_size"] {
        ctx.register_udf(udf(name, &[1], DataType::Int64, |_| ScalarValue::Int64(None)));
    }
    ctx.register_udf(udf("pg_tablespace_location", &[1], DataType::Utf8, |_| ScalarValue::Utf8(None)));
    ctx.register_udf(udf("pg_type_is_visible", &[1], DataType::Boolean, |a| {
        ScalarValue::Boolean((!a[0].is_null()).then_some(true))
    }));
    let l = lookup.clone();
    ctx.register_udf(udf("to_regclass", &[1], DataType::Int32, move |a| match &a[0] {
        ScalarValue::Utf8(Some(name)) => {
            let name = name.trim_start_matches("public.").trim_matches('"');
            ScalarValue::Int32(l.oids.oid(name))
        }
        // An oid already (`attrelid::regclass`).
        v => ScalarValue::Int32(oid_arg(v)),
    }));
    ctx.register_udf(udf("to_regtype", &[1], DataType::Int32, |a| match &a[0] {
        ScalarValue::Utf8(Some(name)) => ScalarValue::Int32(type_oid(name)),
        _ => ScalarValue::Int32(None),
    }));
    ctx.register_udf(expandarray());
    let args: Vec<usize> = (1..=16).collect();
    ctx.register_udf(udf("format", &args, DataType::Utf8, |a| text(pg_format(a))));
    ctx.register_udf(udf("pg_collation_is_visible", &[1], DataType::Boolean, |a| {
        ScalarValue::Boolean((!a[0].is_null()).then_some(true))
    }));
    ctx.register_udf(udf("pg_size_pretty", &[1], DataType::Utf8, |a| match a[0].cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(n))) => text(Some(size_pretty(n))),
        _ => ScalarValue::Utf8(None),
    }));
    ctx.register_udf(udf("pg_function_is_visible", &[1], DataType::Boolean, |a| {
        ScalarValue::Boolean((!a[0].is_null()).then_some(true))
    }));
}

/// Postgres's `format(fmt, args...)` (Metabase): `%s` the value as text, `%I` an identifier
/// quoted when needed, `%L` a quoted literal (NULL unquoted), `%%` a percent sign. NULL format:
/// NULL; too few arguments: NULL (Postgres raises an error).
fn pg_format(args: &[ScalarValue]) -> Option<String> {
    let as_text = |v: &ScalarValue| -> Option<String> {
        match v {
            v if v.is_null() => None,
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                Some(s.clone())
            }
            v => Some(v.to_string()),
        }
    };
    let format = as_text(args.first()?)?;
    let mut values = args[1..].iter();
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '%' => out.push('%'),
            's' => out.push_str(&as_text(values.next()?).unwrap_or_default()),
            'I' => out.push_str(&crate::sql::quote_ident(&as_text(values.next()?)?)),
            'L' => match as_text(values.next()?) {
                Some(v) => out.push_str(&format!("'{}'", v.replace('\'', "''"))),
                None => out.push_str("NULL"),
            },
            _ => return None,
        }
    }
    Some(out)
}

/// The oid of a built-in type by name (`int4`, `integer`, `text[]`, `pg_catalog.numeric`),
/// or `None` (`hstore` and other extension types do not exist here).
fn type_oid(name: &str) -> Option<i32> {
    static BY_NAME: std::sync::LazyLock<std::collections::HashMap<String, i32>> = std::sync::LazyLock::new(|| {
        let mut map = std::collections::HashMap::new();
        for oid in 0..10_000u32 {
            if let Some(t) = pgwire::api::Type::from_oid(oid) {
                map.insert(t.name().to_string(), oid as i32);
                if let Some(element) = t.name().strip_prefix('_') {
                    map.insert(format!("{element}[]"), oid as i32);
                }
            }
        }
        for (alias, canonical) in [
            ("integer", "int4"),
            ("int", "int4"),
            ("smallint", "int2"),
            ("bigint", "int8"),
            ("real", "float4"),
            ("double precision", "float8"),
            ("boolean", "bool"),
            ("character varying", "varchar"),
            ("timestamp without time zone", "timestamp"),
            ("timestamp with time zone", "timestamptz"),
            ("decimal", "numeric"),
        ] {
            if let Some(oid) = map.get(canonical).copied() {
                map.insert(alias.to_string(), oid);
            }
        }
        map
    });
    let n = name.trim().trim_matches('"').to_ascii_lowercase();
    BY_NAME.get(n.strip_prefix("pg_catalog.").unwrap_or(&n)).copied()
}

/// Postgres's `pg_size_pretty`: bytes up to 10 kB, then kB, MB, GB, TB, rounded half up.
fn size_pretty(bytes: i64) -> String {
    let mut value = bytes;
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if value.abs() < 10 * 1024 || unit == "TB" {
            return format!("{value} {unit}");
        }
        value = (value + value.signum() * 512) / 1024;
    }
    unreachable!("the last unit returns")
}

#[derive(Clone)]
struct Lookup {
    catalog: Weak<Catalog>,
    oids: Arc<RelationOids>,
}

impl Lookup {
    /// The table whose oid is `table_oid`, with its key column names.
    fn key_of(&self, table_oid: i32) -> Option<(String, Vec<String>)> {
        let name = self.oids.name(table_oid)?;
        let object = self.catalog.upgrade()?.get(Namespace::Relation, &name)?;
        let Some(Relation::Table { state, .. }) = object.relation else { return None };
        let schema = state.schema();
        let key = state.key_columns()?.iter().map(|i| crate::sql::quote_ident(schema.field(*i).name())).collect();
        Some((name, key))
    }

    /// The relation an argument names: an oid, or a name (`'public.t'`, `'t'::regclass`).
    fn relation(&self, arg: &ScalarValue) -> Option<crate::catalog::CatalogObject> {
        let name = match arg {
            ScalarValue::Utf8(Some(s)) if s.parse::<i32>().is_err() => {
                s.trim_start_matches("public.").trim_matches('"').to_string()
            }
            v => self.oids.name(oid_arg(v)?)?,
        };
        self.catalog.upgrade()?.get(Namespace::Relation, &name)
    }

    /// Bytes a table's or materialized view's rows hold in memory; `None` for a plain view.
    fn size(&self, arg: &ScalarValue) -> Option<i64> {
        match self.relation(arg)?.relation {
            Some(Relation::Table { state, .. }) => Some(state.memory_bytes() as i64),
            _ => None,
        }
    }

    fn viewdef(&self, arg: &ScalarValue) -> Option<String> {
        let object = self.relation(arg)?;
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, &object.entry.create_sql).ok()?;
        match statements.first()? {
            Statement::CreateView(cv) => Some(format!(" {};", cv.query)),
            _ => None,
        }
    }

    fn indexdef(&self, oid: i32, column: i32) -> Option<String> {
        let OidKind::PrimaryKeyIndex(table) = kind_of(oid) else { return None };
        let (name, key) = self.key_of(table)?;
        if column > 0 {
            return key.get(column as usize - 1).cloned();
        }
        Some(format!(
            "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
            crate::sql::quote_ident(&format!("{name}_pkey")),
            crate::sql::quote_ident(&name),
            key.join(", ")
        ))
    }

    fn constraintdef(&self, oid: i32) -> Option<String> {
        let OidKind::PrimaryKeyConstraint(table) = kind_of(oid) else { return None };
        let (_, key) = self.key_of(table)?;
        Some(format!("PRIMARY KEY ({})", key.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_like_postgres() {
        use datafusion::scalar::ScalarValue as V;
        let args =
            [V::from("%I.%I = %L, %s%%"), V::from("public"), V::from("Items"), V::from("it's"), V::Int32(Some(5))];
        assert_eq!(super::pg_format(&args).as_deref(), Some("public.\"Items\" = 'it''s', 5%"));
    }

    #[test]
    fn size_pretty_like_postgres() {
        assert_eq!(super::size_pretty(8192), "8192 bytes");
        assert_eq!(super::size_pretty(10 * 1024), "10 kB");
        assert_eq!(super::size_pretty(123_456_789), "118 MB");
    }
}

/// `information_schema._pg_expandarray(arr)` (pgjdbc's `getPrimaryKeys`) returns a row
/// `(x, n)` per element. Here: `hw_expandarray(arr)`, the list of those rows as structs, which
/// `compat` wraps in `unnest(...)`, so `(... ).x` and `(...).n` are struct field accesses.
pub fn expandarray() -> ScalarUDF {
    ScalarUDF::new_from_impl(ExpandArray { signature: Signature::any(1, Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

fn expanded_type(element: &DataType) -> DataType {
    let fields = datafusion::arrow::datatypes::Fields::from(vec![
        datafusion::arrow::datatypes::Field::new("x", element.clone(), true),
        datafusion::arrow::datatypes::Field::new("n", DataType::Int32, false),
    ]);
    DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new("item", DataType::Struct(fields), true)))
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "hw_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match &args[0] {
            DataType::List(f) => Ok(expanded_type(f.data_type())),
            other => datafusion::common::plan_err!("_pg_expandarray needs an array, got {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{Array, ArrayRef, Int32Array, ListArray, StructArray};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(list) = arrays[0].as_any().downcast_ref::<ListArray>() else {
            return datafusion::common::exec_err!("_pg_expandarray needs an array");
        };
        let offsets = list.value_offsets();
        let n: Int32Array = (0..list.len()).flat_map(|i| (1..=(offsets[i + 1] - offsets[i])).map(Some)).collect();
        let first = offsets[0] as usize;
        let len = (offsets[list.len()] - offsets[0]) as usize;
        let values = list.values().slice(first, len);
        let DataType::List(item) = expanded_type(values.data_type()) else { unreachable!("a list type") };
        let DataType::Struct(fields) = item.data_type() else { unreachable!("a struct type") };
        let rows = StructArray::new(fields.clone(), vec![values, Arc::new(n) as ArrayRef], None);
        let rebased = datafusion::arrow::buffer::OffsetBuffer::new(
            offsets.iter().map(|o| o - offsets[0]).collect::<Vec<_>>().into(),
        );
        let out = ListArray::new(item, rebased, Arc::new(rows), list.nulls().cloned());
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
