//! What Postgres DML has beyond DataFusion's DML planner: `RETURNING` and
//! `INSERT ... ON CONFLICT`.
//!
//! Both clauses are taken off the statement before DataFusion plans it ([`take_clauses`]);
//! [`super::dml`] then computes the statement's rows as usual and these functions finish the
//! job over them, evaluating the clauses' SQL expressions with DataFusion (planned against a
//! schema of the rows, with the table's name or alias and `excluded` as qualifiers; executed
//! as physical expressions on the batch, so every function and cast DataFusion has works):
//!
//! - `RETURNING items`: evaluated over the rows the statement wrote — inserted rows, the new
//!   image of updated rows, deleted rows ([`returning`]).
//! - `ON CONFLICT [(key columns)] DO NOTHING`: proposed rows whose key the table already holds
//!   (or an earlier proposed row has) are dropped.
//! - `ON CONFLICT (key columns) DO UPDATE SET ... [WHERE ...]`: a proposed row whose key the
//!   table holds updates that row instead: the assignments see the table's row under its
//!   name and the proposed one as `excluded` ([`resolve_conflicts`]). A key proposed twice
//!   is 21000, as in Postgres. The conflict target must be the primary key (42P10).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{DFSchema, TableReference};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Expr, ExprWithAlias, OnConflict, OnConflictAction, OnInsert, SelectItem,
    Statement,
};

use crate::error::{Error, Result};
use crate::state::table::PinnedRows;
use crate::state::TableState;

/// The clauses of a DML statement that DataFusion does not plan.
#[derive(Debug, Clone, Default)]
pub struct Clauses {
    pub returning: Option<Vec<SelectItem>>,
    pub on_conflict: Option<OnConflict>,
}

/// Removes RETURNING and ON CONFLICT (and an INSERT's table alias) from `stmt` and returns
/// them (MySQL's ON DUPLICATE KEY UPDATE is refused).
pub fn take_clauses(stmt: &mut Statement) -> Result<Clauses> {
    Ok(match stmt {
        Statement::Insert(insert) => {
            let on_conflict = match insert.on.take() {
                None => None,
                Some(OnInsert::OnConflict(c)) => Some(c),
                Some(other) => return Err(Error::FeatureNotSupported(format!("{other}; use ON CONFLICT"))),
            };
            // DataFusion refuses `INSERT INTO t AS x`; the alias only names the table in
            // these clauses (see `dml::target_qualifier`).
            insert.table_alias = None;
            Clauses { returning: insert.returning.take(), on_conflict }
        }
        Statement::Update(update) => Clauses { returning: update.returning.take(), on_conflict: None },
        Statement::Delete(delete) => {
            unalias_delete(delete);
            Clauses { returning: delete.returning.take(), on_conflict: None }
        }
        _ => Clauses::default(),
    })
}

/// DataFusion plans `DELETE FROM t AS d WHERE d.x = 1` without the alias (`d.x` is then
/// unknown): the alias is dropped and the condition names the table.
fn unalias_delete(delete: &mut datafusion::sql::sqlparser::ast::Delete) {
    use datafusion::sql::sqlparser::ast::{FromTable, Ident, TableFactor};
    use std::ops::ControlFlow;
    let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &mut delete.from;
    let Some(TableFactor::Table { name, alias, .. }) = tables.first_mut().map(|t| &mut t.relation) else { return };
    let Some(a) = alias.take() else { return };
    let Some(table) = name.0.last().and_then(|p| p.as_ident()).cloned() else { return };
    let is_alias = |i: &Ident| super::naming::ident_name(i) == super::naming::ident_name(&a.name);
    if let Some(selection) = &mut delete.selection {
        let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(selection, |e| {
            if let Expr::CompoundIdentifier(parts) = e {
                if parts.len() == 2 && is_alias(&parts[0]) {
                    parts[0] = table.clone();
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// Rows named for SQL expressions: each column of each batch under its qualifier.
struct Scope {
    schema: DFSchema,
    batch: RecordBatch,
}

impl Scope {
    fn new(parts: &[(&str, &RecordBatch)]) -> Result<Scope> {
        let mut fields: Vec<(Option<TableReference>, Arc<Field>)> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (qualifier, batch) in parts {
            for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
                fields.push((Some(TableReference::bare(*qualifier)), Arc::new(f.as_ref().clone().with_nullable(true))));
                columns.push(c.clone());
            }
        }
        let schema = DFSchema::new_with_metadata(fields, HashMap::new())?;
        let rows = parts.first().map_or(0, |(_, b)| b.num_rows());
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(Arc::new(schema.as_arrow().clone()), columns, &options)?;
        Ok(Scope { schema, batch })
    }

    /// `expr` evaluated on every row.
    fn eval(&self, ctx: &SessionContext, expr: &Expr) -> Result<ArrayRef> {
        let state = ctx.state();
        let logical =
            state.create_logical_expr_from_sql_expr(ExprWithAlias { expr: expr.clone(), alias: None }, &self.schema)?;
        let physical = state.create_physical_expr(logical, &self.schema)?;
        Ok(physical.evaluate(&self.batch)?.into_array(self.batch.num_rows())?)
    }
}

/// The rows `RETURNING items` gives for the `rows` a statement wrote to a table known as
/// `qualifier` (its name, or its alias).
pub fn returning(
    ctx: &SessionContext,
    items: &[SelectItem],
    qualifier: &str,
    rows: &RecordBatch,
) -> Result<RecordBatch> {
    let scope = Scope::new(&[(qualifier, rows)])?;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for (f, c) in rows.schema().fields().iter().zip(rows.columns()) {
                    fields.push(f.as_ref().clone().with_nullable(true));
                    columns.push(c.clone());
                }
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let name = match item {
                    SelectItem::ExprWithAlias { alias, .. } => super::naming::ident_name(alias),
                    _ => super::naming::pg_name(e, true),
                };
                let array = scope.eval(ctx, e)?;
                fields.push(Field::new(name, array.data_type().clone(), true));
                columns.push(array);
            }
            other => return Err(Error::FeatureNotSupported(format!("RETURNING {other}"))),
        }
    }
    let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
}

/// The columns `RETURNING items` gives (for Describe), from the table's schema.
pub fn returning_schema(
    ctx: &SessionContext,
    items: &[SelectItem],
    qualifier: &str,
    table: &SchemaRef,
) -> Result<SchemaRef> {
    let empty = RecordBatch::new_empty(table.clone());
    Ok(returning(ctx, items, qualifier, &empty)?.schema())
}

/// What an `INSERT ... ON CONFLICT` writes: rows to insert, and (DO UPDATE) the table's rows
/// it replaces with their new images.
pub struct Resolved {
    pub insert: RecordBatch,
    pub replaced: RecordBatch,
    pub updated: RecordBatch,
}

/// Splits the `proposed` rows of `INSERT ... ON CONFLICT` into rows to insert and updates of
/// rows the table (as `pinned`, known to the statement as `qualifier`) already holds.
pub fn resolve_conflicts(
    ctx: &SessionContext,
    table: &TableState,
    pinned: &PinnedRows,
    qualifier: &str,
    clause: &OnConflict,
    proposed: RecordBatch,
) -> Result<Resolved> {
    let schema = table.schema();
    let Some(key) = table.key_columns() else {
        return Err(no_matching_key(table.name()));
    };
    match &clause.conflict_target {
        None if matches!(clause.action, OnConflictAction::DoNothing) => {}
        Some(ConflictTarget::Columns(columns)) => {
            let named: HashSet<String> = columns.iter().map(super::naming::ident_name).collect();
            let keyed: HashSet<String> = key.iter().map(|&k| schema.field(k).name().clone()).collect();
            if named != keyed {
                return Err(no_matching_key(table.name()));
            }
        }
        Some(ConflictTarget::OnConstraint(name))
            if name.to_string().trim_matches('"') == format!("{}_pkey", table.name()) => {}
        _ => return Err(no_matching_key(table.name())),
    }
    // Which proposed rows hit a held key (and which one), and which repeat an earlier one.
    let key_arrays: Vec<ArrayRef> = key.iter().map(|&k| proposed.column(k).clone()).collect();
    let format = RowConverter::new(key_arrays.iter().map(|a| SortField::new(a.data_type().clone())).collect())?;
    let encoded = format.convert_columns(&key_arrays)?;
    let mut seen = HashSet::new();
    let (mut fresh, mut hits) = (Vec::new(), Vec::new());
    let mut held: Vec<RecordBatch> = Vec::new();
    for i in 0..proposed.num_rows() {
        if !seen.insert(encoded.row(i).as_ref().to_vec()) {
            if matches!(clause.action, OnConflictAction::DoUpdate(_)) {
                return Err(Error::CardinalityViolation(
                    "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
                ));
            }
            continue;
        }
        let values: Vec<ArrayRef> = key_arrays.iter().map(|a| a.slice(i, 1)).collect();
        let found = table.lookup(pinned, &values)?;
        if found.num_rows() == 0 {
            fresh.push(i as u32);
        } else {
            hits.push(i as u32);
            held.push(found);
        }
    }
    let insert = take_record_batch(&proposed, &UInt32Array::from(fresh))?;
    let OnConflictAction::DoUpdate(update) = &clause.action else {
        let empty = RecordBatch::new_empty(schema.clone());
        return Ok(Resolved { insert, replaced: empty.clone(), updated: empty });
    };
    let excluded = take_record_batch(&proposed, &UInt32Array::from(hits))?;
    let existing = concat_batches(&schema, &held)?;
    let scope = Scope::new(&[(qualifier, &existing), ("excluded", &excluded)])?;
    let mut columns: Vec<ArrayRef> = existing.columns().to_vec();
    for a in &update.assignments {
        let AssignmentTarget::ColumnName(target) = &a.target else {
            return Err(Error::FeatureNotSupported("a column tuple in ON CONFLICT DO UPDATE SET".into()));
        };
        let name = target.0.last().and_then(|p| p.as_ident()).map(super::naming::ident_name).unwrap_or_default();
        let Some(i) = schema.fields().iter().position(|f| *f.name() == name) else {
            return Err(Error::UndefinedColumn(format!(
                "column \"{name}\" of relation \"{}\" does not exist",
                table.name()
            )));
        };
        if key.contains(&i) {
            return Err(Error::FeatureNotSupported(format!(
                "changing the primary key column \"{name}\" in ON CONFLICT DO UPDATE"
            )));
        }
        let value = scope.eval(ctx, &a.value)?;
        columns[i] = datafusion::arrow::compute::cast(&value, schema.field(i).data_type())?;
    }
    let new = RecordBatch::try_new(schema.clone(), columns)?;
    let keep = match &update.selection {
        Some(condition) => {
            let mask = scope.eval(ctx, condition)?;
            let mask = mask.as_any().downcast_ref::<BooleanArray>().cloned().ok_or_else(|| {
                Error::DatatypeMismatch("argument of ON CONFLICT DO UPDATE WHERE must be type boolean".into())
            })?;
            // NULL is not true.
            BooleanArray::from(mask.iter().map(|b| Some(b == Some(true))).collect::<Vec<_>>())
        }
        None => BooleanArray::from(vec![true; new.num_rows()]),
    };
    Ok(Resolved {
        insert,
        replaced: filter_record_batch(&existing, &keep)?,
        updated: filter_record_batch(&new, &keep)?,
    })
}

fn no_matching_key(table: &str) -> Error {
    Error::InvalidColumnReference(format!(
        "there is no unique or exclusion constraint matching the ON CONFLICT specification (the primary key of \
             \"{table}\" is the only unique constraint)"
    ))
}
