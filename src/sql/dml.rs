//! INSERT / UPDATE / DELETE: DataFusion computes the rows a statement adds and removes; they
//! become one [`ChangeBatch`] per statement, committed atomically by
//! [`Dataflow::commit`](crate::dataflow::Dataflow::commit), which also maintains the materialized views that read the table.
//!
//! - `INSERT`: the planned source rows (cast to the table's types), weight +1.
//! - `DELETE`: the matching rows of the table, weight −1.
//! - `UPDATE`: DataFusion's plan projects each matching row to its new value; we widen that
//!   projection to also return the old value, giving −old +new per row.
//!
//! The commit checks the primary key (23505) and NOT NULL (23502); nothing is written unless
//! the whole statement passes.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Column, ParamValues, TableReference};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, WriteOp};
use datafusion::sql::sqlparser::ast::{Statement, TableFactor};

use super::dml_clauses::{self, take_clauses};
use super::provider::PINNED;
use super::result::QueryResult;
use super::Session;
use crate::catalog::{Namespace, Relation};
use crate::change::{ApplyMode, ChangeBatch};
use crate::error::{Error, Result};
use crate::sql::parser::ObjectType;
use crate::state::WriteBatch;

/// Executes one DML statement. Outside a transaction block, a statement whose rows another
/// commit changed between its read and its commit (40001) is run again from the start, as
/// Postgres re-evaluates a row it waited for: concurrent `UPDATE t SET n = n + 1` all count.
pub(super) async fn execute(s: &Session, stmt: &Statement, params: Option<&ParamValues>) -> Result<QueryResult> {
    let filled = super::insert_defaults::fill(s, stmt)?;
    let stmt = filled.as_ref().unwrap_or(stmt);
    let in_block = s.transaction(|tx| tx.is_some());
    let mut attempt = 0;
    loop {
        match execute_once(s, stmt, params).await {
            Err(Error::SerializationFailure(_)) if !in_block && attempt < RETRIES => attempt += 1,
            result => return result,
        }
    }
}

/// How many times a statement outside a block is run again after a concurrent change.
const RETRIES: usize = 32;

async fn execute_once(s: &Session, stmt: &Statement, params: Option<&ParamValues>) -> Result<QueryResult> {
    let clauses = take_clauses(&mut stmt.clone())?;
    let mut plan = s.plan(stmt).await?;
    if let Some(p) = params {
        plan = plan.with_param_values(p.clone())?;
    }
    let LogicalPlan::Dml(dml) = plan else {
        return Err(Error::Internal("DML did not plan to a write".into()));
    };
    let name = dml.table_name.table().to_string();
    let object = s.engine().catalog().get(Namespace::Relation, &name);
    if object.as_ref().is_some_and(|o| o.object_type() == ObjectType::MaterializedView) {
        return Err(Error::WrongObjectType {
            name,
            expected: "table (a materialized view changes only with the tables it reads)",
        });
    }
    if let Some(source) =
        object.as_ref().and_then(|o| o.entry.depends_on.iter().find_map(|d| d.strip_prefix("source:")))
    {
        return Err(Error::WrongObjectType {
            name: format!("{name} (captured by source {source})"),
            expected: "local table: a captured table changes only with its upstream table",
        });
    }
    let table = match object.and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => state,
        Some(_) => return Err(Error::WrongObjectType { name, expected: "table (views are read-only)" }),
        None => return Err(Error::UndefinedTable(name)),
    };
    let schema = table.schema();
    let qualifier = target_qualifier(stmt, &name);
    // The rows the statement wrote (what RETURNING sees).
    let written: RecordBatch;
    let (change, tag, rows) = match &dml.op {
        WriteOp::Insert(_) => {
            check_assignment_types(&dml.input, &schema)?;
            let rows = collect(s, dml.input.as_ref().clone())
                .await
                .map_err(|e| name_values_column(e, stmt, &schema, &name))?;
            let batch = conform(&schema, &name, rows)?;
            match &clauses.on_conflict {
                None => {
                    written = batch.clone();
                    let n = batch.num_rows();
                    (ChangeBatch::uniform(batch, 1), "INSERT", n)
                }
                Some(clause) => {
                    let pinned = s.pin_table(&table);
                    let r = dml_clauses::resolve_conflicts(s.context(), &table, &pinned, &qualifier, clause, batch)?;
                    let updated = conform(&schema, &name, r.updated)?;
                    let parts = [(&r.insert, 1), (&r.replaced, -1), (&updated, 1)];
                    let data = concat_batches(&schema, parts.iter().map(|(b, _)| *b))?;
                    let weights = parts.iter().flat_map(|(b, w)| std::iter::repeat_n(*w, b.num_rows())).collect();
                    written = concat_batches(&schema, [&r.insert, &updated])?;
                    let n = written.num_rows();
                    (ChangeBatch { data, weights, mode: Default::default() }, "INSERT", n)
                }
            }
        }
        WriteOp::Delete => {
            let batch = conform(&schema, &name, collect(s, dml.input.as_ref().clone()).await?)?;
            let n = batch.num_rows();
            written = batch.clone();
            (ChangeBatch::uniform(batch, -1), "DELETE", n)
        }
        WriteOp::Update => {
            let qualifier = update_qualifier(stmt, &dml.table_name);
            let widened = old_and_new(&dml.input, qualifier, &schema)?;
            let both = collect(s, widened).await?;
            let width = schema.fields().len();
            let old = conform(&schema, &name, both.columns()[..width].to_vec())?;
            let new = conform(&schema, &name, both.columns()[width..].to_vec())?;
            let n = old.num_rows();
            let data = concat_batches(&schema, [&old, &new])?;
            written = new;
            let weights = std::iter::repeat_n(-1, n).chain(std::iter::repeat_n(1, n)).collect();
            (ChangeBatch { data, weights, mode: Default::default() }, "UPDATE", n)
        }
        other => return Err(Error::FeatureNotSupported(format!("{other}"))),
    };
    // Computed from rows read before the commit: checked against them (40001 if another
    // commit changed them meanwhile).
    let change = ChangeBatch { mode: ApplyMode::Checked, ..change };
    let in_block = s.transaction(|tx| tx.map(|t| t.write(&table, change.clone()))).transpose()?.is_some();
    if !in_block && !change.is_empty() {
        s.engine().dataflow().commit(&[(&table, &change)], WriteBatch::default())?;
    }
    if let Some(items) = &clauses.returning {
        let batch = dml_clauses::returning(s.context(), items, &qualifier, &written)?;
        return Ok(QueryResult::Returned { tag: tag.to_string(), batch });
    }
    Ok(QueryResult::Command { tag: tag.to_string(), rows: Some(rows) })
}

/// Inserts `batch` (every column of table `name`, in order) as one atomic write, as
/// `INSERT` does: the rows `COPY ... FROM STDIN` read. The rows written.
pub(super) async fn insert_rows(s: &Session, name: &str, batch: RecordBatch) -> Result<usize> {
    let table = match s.engine().catalog().get(Namespace::Relation, name).and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => state,
        _ => return Err(Error::UndefinedTable(name.to_string())),
    };
    let schema = table.schema();
    let batch = conform(&schema, name, batch)?;
    let n = batch.num_rows();
    let change = ChangeBatch { mode: ApplyMode::Checked, ..ChangeBatch::uniform(batch, 1) };
    let in_block = s.transaction(|tx| tx.map(|t| t.write(&table, change.clone()))).transpose()?.is_some();
    if !in_block && !change.is_empty() {
        s.engine().dataflow().commit(&[(&table, &change)], WriteBatch::default())?;
    }
    Ok(n)
}

/// The columns a DML statement's RETURNING gives (for Describe); `None` without RETURNING.
pub(super) fn returning_schema(s: &Session, stmt: &Statement, plan: &LogicalPlan) -> Result<Option<SchemaRef>> {
    let Some(items) = take_clauses(&mut stmt.clone())?.returning else { return Ok(None) };
    let LogicalPlan::Dml(dml) = plan else { return Ok(None) };
    let name = dml.table_name.table().to_string();
    let schema = match s.engine().catalog().get(Namespace::Relation, &name).and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => state.schema(),
        _ => return Err(Error::UndefinedTable(name)),
    };
    dml_clauses::returning_schema(s.context(), &items, &target_qualifier(stmt, &name), &schema).map(Some)
}

/// The name a DML statement's target table goes by in its expressions: its alias, or its name.
fn target_qualifier(stmt: &Statement, table: &str) -> String {
    let fold = |a: &datafusion::sql::sqlparser::ast::Ident| {
        if a.quote_style.is_some() {
            a.value.clone()
        } else {
            a.value.to_lowercase()
        }
    };
    let alias = match stmt {
        Statement::Insert(i) => i.table_alias.as_ref().map(|a| fold(&a.alias)),
        Statement::Update(u) => match &u.table.relation {
            TableFactor::Table { alias: Some(alias), .. } => Some(fold(&alias.name)),
            _ => None,
        },
        Statement::Delete(d) => {
            let from = match &d.from {
                datafusion::sql::sqlparser::ast::FromTable::WithFromKeyword(t)
                | datafusion::sql::sqlparser::ast::FromTable::WithoutKeyword(t) => t.first(),
            };
            match from.map(|t| &t.relation) {
                Some(TableFactor::Table { alias: Some(alias), .. }) => Some(fold(&alias.name)),
                _ => None,
            }
        }
        _ => None,
    };
    alias.unwrap_or_else(|| table.to_string())
}

/// DataFusion checks NOT NULL on `INSERT ... VALUES` itself and names the VALUES list's
/// column (`column2`): the error names the table's column instead, as Postgres does.
fn name_values_column(e: Error, stmt: &Statement, schema: &Schema, table: &str) -> Error {
    let Error::NullInColumn { column } = &e else { return e };
    let Some(n) = column.strip_prefix("column").and_then(|n| n.parse::<usize>().ok()) else {
        return e;
    };
    let target = match stmt {
        Statement::Insert(insert) if !insert.columns.is_empty() => {
            insert.columns.get(n - 1).map(|c| c.to_string().trim_matches('"').to_string())
        }
        _ => schema.fields().get(n.wrapping_sub(1)).map(|f| f.name().clone()),
    };
    match target {
        Some(column) => Error::NotNullViolation { table: table.to_string(), column },
        None => e,
    }
}

/// Runs a plan and returns its rows as one batch (reading what the session's open
/// transaction block wrote, if any).
async fn collect(s: &Session, plan: LogicalPlan) -> Result<RecordBatch> {
    let pinned = s.pin_read(&plan)?;
    let df = s.context().execute_logical_plan(plan).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = PINNED.scope(pinned, df.collect()).await?;
    // The planned types: the analyzer may narrow a literal's type (`sql::literals`: `SET c =
    // 100` is an `integer` once analyzed), and the rows must have the table's.
    let batches = batches
        .into_iter()
        .map(|b| {
            if b.schema().fields().iter().zip(schema.fields()).all(|(a, w)| a.data_type() == w.data_type()) {
                return Ok(b);
            }
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(concat_batches(&schema, &batches)?)
}

/// Gives `columns` exactly the table's schema: casts where types differ, rejects NULLs in
/// NOT NULL columns.
fn conform(schema: &SchemaRef, table: &str, columns: impl Into<Columns>) -> Result<RecordBatch> {
    let columns = columns.into().0;
    let mut out = Vec::with_capacity(columns.len());
    for (field, col) in schema.fields().iter().zip(columns) {
        let col = if col.data_type() == field.data_type() { col } else { cast(&col, field.data_type())? };
        let col = match crate::types::PgText::of(field) {
            Some(t) => assign_typed_text(t, col)?,
            None => col,
        };
        if !field.is_nullable() && col.null_count() > 0 {
            return Err(Error::NotNullViolation { table: table.to_string(), column: field.name().clone() });
        }
        out.push(col);
    }
    Ok(RecordBatch::try_new(schema.clone(), out)?)
}

/// A column's values stored as its Postgres type requires (`json` valid, `jsonb` canonical,
/// `varchar(n)`/`char(n)` within their length: 22001).
fn assign_typed_text(t: crate::types::PgText, col: ArrayRef) -> Result<ArrayRef> {
    let Some(values) = col.as_any().downcast_ref::<datafusion::arrow::array::StringArray>() else {
        return Ok(col);
    };
    match t.assign(values) {
        Ok(Some(changed)) => Ok(Arc::new(changed)),
        Ok(None) => Ok(col),
        Err(e) => Err(Error::DataException { sqlstate: e.sqlstate, message: e.message }),
    }
}

/// Columns, from a batch or a slice of one.
struct Columns(Vec<ArrayRef>);

impl From<RecordBatch> for Columns {
    fn from(b: RecordBatch) -> Self {
        Columns(b.columns().to_vec())
    }
}

impl From<Vec<ArrayRef>> for Columns {
    fn from(v: Vec<ArrayRef>) -> Self {
        Columns(v)
    }
}

/// The name the target table's columns carry in an UPDATE plan: its alias, if it has one.
fn update_qualifier(stmt: &Statement, table: &TableReference) -> TableReference {
    if let Statement::Update(u) = stmt {
        if let TableFactor::Table { alias: Some(alias), .. } = &u.table.relation {
            let a = &alias.name;
            let name = if a.quote_style.is_some() { a.value.clone() } else { a.value.to_lowercase() };
            return TableReference::bare(name);
        }
    }
    table.clone()
}

/// Turns DataFusion's UPDATE input (a projection of the new row values) into one that returns
/// the old values followed by the new ones.
fn old_and_new(input: &LogicalPlan, qualifier: TableReference, schema: &Schema) -> Result<LogicalPlan> {
    let LogicalPlan::Projection(p) = input else {
        return Err(Error::Internal("UPDATE plan is not a projection".into()));
    };
    let mut exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| Expr::Column(Column::new(Some(qualifier.clone()), f.name())).alias(format!("__old_{}", f.name())))
        .collect();
    exprs.extend(p.expr.iter().cloned());
    Ok(LogicalPlanBuilder::from(p.input.as_ref().clone()).project(exprs)?.build()?)
}

/// Postgres refuses to store a value whose type has no assignment cast to the column's type
/// (`INSERT INTO t (id) VALUES (true)` with an INT id): 42804. DataFusion would cast anyway.
fn check_assignment_types(input: &LogicalPlan, schema: &Schema) -> Result<()> {
    let LogicalPlan::Projection(p) = input else {
        return Ok(());
    };
    for (expr, field) in p.expr.iter().zip(schema.fields()) {
        let e = match expr {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        match (e, p.input.as_ref()) {
            // INSERT ... VALUES: the planner casts each value to the column type in place.
            (Expr::Column(c), LogicalPlan::Values(values)) => {
                let Some(idx) = values.schema.index_of_column(c).ok() else {
                    continue;
                };
                for row in &values.values {
                    if let Some(v) = row.get(idx) {
                        check_cast(v, values.schema.as_ref(), field)?;
                    }
                }
            }
            _ => check_cast(e, p.input.schema(), field)?,
        }
    }
    Ok(())
}

fn check_cast(
    e: &Expr,
    input: &datafusion::common::DFSchema,
    field: &datafusion::arrow::datatypes::Field,
) -> Result<()> {
    let inner = match e {
        Expr::Cast(c) => c.expr.as_ref(),
        Expr::TryCast(c) => c.expr.as_ref(),
        _ => return Ok(()),
    };
    let from = inner.get_type(input)?;
    if !assignable(&from, field.data_type()) {
        return Err(Error::DatatypeMismatch(format!(
            "column \"{}\" is of type {} but expression is of type {}",
            field.name(),
            pg_type_name(field.data_type()),
            pg_type_name(&from)
        )));
    }
    Ok(())
}

#[derive(PartialEq)]
enum Category {
    Numeric,
    String,
    Boolean,
    Temporal,
    Interval,
    Binary,
    Other,
}

fn category(t: &DataType) -> Category {
    use DataType::*;
    match t {
        Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float16
        | Float32
        | Float64
        | Decimal32(_, _)
        | Decimal64(_, _)
        | Decimal128(_, _)
        | Decimal256(_, _) => Category::Numeric,
        Utf8 | LargeUtf8 | Utf8View => Category::String,
        Boolean => Category::Boolean,
        Date32 | Date64 | Timestamp(_, _) | Time32(_) | Time64(_) => Category::Temporal,
        Interval(_) | Duration(_) => Category::Interval,
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => Category::Binary,
        _ => Category::Other,
    }
}

fn assignable(from: &DataType, to: &DataType) -> bool {
    use DataType::{FixedSizeList, LargeList, List};
    // An array is assignable when its elements are (`ARRAY[1, 2]`, bigints, into an int[]).
    // Its elements are typed (`ARRAY['a']` is text[], not a literal of unknown type).
    if let (List(f) | LargeList(f) | FixedSizeList(f, _), List(t) | LargeList(t) | FixedSizeList(t, _)) = (from, to) {
        let (f, t) = (f.data_type(), t.data_type());
        return (category(f) != Category::String || category(t) == Category::String) && assignable(f, t);
    }
    // A string literal is Postgres' "unknown" type: it may become anything, and anything
    // may be stored as text.
    from == to
        || from.is_null()
        || category(from) == Category::String
        || category(to) == Category::String
        || (category(from) == category(to) && category(from) != Category::Other)
}

/// The type's name as Postgres prints it in messages and `pg_typeof` (`integer`, not `int4`).
pub(crate) fn pg_type_name(t: &DataType) -> String {
    if t.is_null() {
        return "unknown".into();
    }
    if let DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) = t {
        return format!("{}[]", pg_type_name(f.data_type()));
    }
    let Ok(pg) = arrow_pg::datatypes::into_pg_type(t) else {
        return t.to_string();
    };
    match pg.name() {
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        other => other,
    }
    .to_string()
}
