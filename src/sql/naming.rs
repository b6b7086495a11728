//! Output column names the way Postgres chooses them.
//!
//! DataFusion names an unaliased expression after its text (`count(*)`, `Int64(1)`);
//! Postgres names it after the function (`count`), the cast's inner column or type, or
//! `?column?`. Drivers and BI tools show and key on these names, so the outermost SELECT of a
//! query gets explicit aliases before planning.
//!
//! Postgres lets a result repeat a name (`SELECT 1, 1`, `SELECT id, id FROM t`, `count(*),
//! count(*)`, `INSERT INTO t SELECT i, i ...`); DataFusion refuses duplicate names in a
//! projection. So a query's repeated names after the first are planned under a unique
//! internal alias, the name followed by [`DUPLICATE_MARK`] and its position, and results
//! carry the name without the mark ([`output_schema`], [`shown_stream`]): the session's
//! results, Describe and point lookups, so neither the wire nor an embedder sees the mark. A view's columns must be unique, as
//! in Postgres: [`name_view_columns`] leaves duplicates alone, and planning refuses them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement};

/// Separates a repeated output name from the position that makes it unique inside a plan
/// (ASCII unit separator: nothing a user types into a name).
pub const DUPLICATE_MARK: char = '\u{1f}';

/// Adds Postgres-style aliases to the unaliased expressions of a query's select list (and of
/// an `INSERT`'s source query), with repeated names made unique for planning.
pub fn name_output_columns(stmt: &mut Statement) {
    match stmt {
        Statement::Query(q) => name_select(q, true),
        Statement::Insert(insert) => {
            if let Some(q) = insert.source.as_mut() {
                name_select(q, true);
            }
        }
        _ => {}
    }
}

/// [`name_output_columns`] for a view's query: repeated names are left for planning to refuse.
pub fn name_view_columns(query: &mut Query) {
    name_select(query, false);
}

fn name_select(q: &mut Query, for_query: bool) {
    name_set_expr(q.body.as_mut(), for_query);
}

/// Names a select list; `for_query` (not a view): repeated names are made unique, every
/// branch of a `UNION`/`INTERSECT`/`EXCEPT` is named (the result takes the first branch's
/// names; each branch is a projection DataFusion checks), and typed literals are named after
/// their type. A view gets only what views got when they were first stored: its column names
/// are part of what a restart restores.
fn name_set_expr(body: &mut SetExpr, for_query: bool) {
    let select = match body {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { left, right, .. } if for_query => {
            name_set_expr(left, for_query);
            name_set_expr(right, for_query);
            return;
        }
        SetExpr::Query(q) if for_query => return name_select(q, for_query),
        _ => return,
    };
    let names: Vec<Option<String>> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(pg_name(e, for_query)),
            SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
            _ => None,
        })
        .collect();
    // `SELECT *, id`: the names a wildcard brings are known only after planning, so every
    // other item may repeat one of them.
    let wildcard = select
        .projection
        .iter()
        .any(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
    for (i, item) in select.projection.iter_mut().enumerate() {
        let Some(name) = names[i].clone() else {
            continue;
        };
        let repeated = (wildcard && for_query) || names[..i].iter().any(|n| n.as_deref() == Some(name.as_str()));
        let unique = !repeated && names[i + 1..].iter().all(|n| n.as_deref() != Some(name.as_str()));
        let internal = Ident::with_quote('"', format!("{name}{DUPLICATE_MARK}{i}"));
        match item {
            SelectItem::UnnamedExpr(e) if repeated && for_query => {
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: internal };
            }
            SelectItem::ExprWithAlias { alias, .. } if repeated && for_query => *alias = internal,
            // DataFusion already names a column after itself.
            SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => {}
            SelectItem::UnnamedExpr(e) if unique || (for_query && !repeated) => {
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::with_quote('"', name) };
            }
            _ => {}
        }
    }
}

/// The name a client is shown for an output column (without a [`DUPLICATE_MARK`] suffix).
pub fn shown_name(name: &str) -> &str {
    name.split(DUPLICATE_MARK).next().unwrap_or(name)
}

/// A plan's output schema with the names clients are shown.
pub fn output_schema(plan: &datafusion::logical_expr::LogicalPlan) -> SchemaRef {
    let planned = Arc::new(plan.schema().as_arrow().clone());
    shown_schema(&planned).unwrap_or(planned)
}

/// `stream` with the names clients are shown (its batches relabelled when a repeated name
/// was made unique; the columns are the same arrays).
pub fn shown_stream(planned: &SchemaRef, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    use futures::StreamExt;
    let Some(shown) = shown_schema(planned) else { return stream };
    let relabel = shown.clone();
    let batches = stream.map(move |b| {
        let b = b?;
        let schema = shown_schema(&b.schema()).unwrap_or_else(|| relabel.clone());
        Ok(RecordBatch::try_new(schema, b.columns().to_vec())?)
    });
    Box::pin(RecordBatchStreamAdapter::new(shown, batches))
}

/// `schema` with the names clients are shown, when a repeated name was made unique.
pub fn shown_schema(schema: &SchemaRef) -> Option<SchemaRef> {
    if !schema.fields().iter().any(|f| f.name().contains(DUPLICATE_MARK)) {
        return None;
    }
    let fields: Vec<_> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_name(shown_name(f.name()).to_string())).collect();
    Some(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

pub(super) fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The name Postgres gives an unaliased select-list expression (`for_query`: see
/// [`name_set_expr`]).
pub(super) fn pg_name(e: &Expr, for_query: bool) -> String {
    match e {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name).unwrap_or_else(unnamed),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_else(unnamed),
        Expr::Cast { expr, data_type, .. } => match pg_name(expr, for_query) {
            n if n == "?column?" => type_name(data_type),
            n => n,
        },
        // `TIMESTAMP '...'`, `DATE '...'`, `INTERVAL '1 day'`: named after the type (in
        // queries; views keep the names they were first stored with).
        Expr::TypedString(ts) if for_query => type_name(&ts.data_type),
        Expr::Interval(_) if for_query => "interval".into(),
        // Postgres names these after the function they stand for.
        Expr::Extract { .. } if for_query => "extract".into(),
        Expr::Substring { .. } if for_query => "substring".into(),
        Expr::Position { .. } if for_query => "position".into(),
        Expr::Trim { .. } if for_query => "btrim".into(),
        Expr::Overlay { .. } if for_query => "overlay".into(),
        Expr::Ceil { .. } if for_query => "ceil".into(),
        Expr::Floor { .. } if for_query => "floor".into(),
        Expr::Nested(inner) => pg_name(inner, for_query),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        _ => unnamed(),
    }
}

/// A type's name as Postgres names a cast of a constant to it (`timestamp`, `numeric`).
fn type_name(t: &DataType) -> String {
    let t = t.to_string().to_lowercase();
    t.split('(').next().unwrap_or(&t).trim().to_string()
}

fn unnamed() -> String {
    "?column?".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn named(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        name_output_columns(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(named("SELECT 1"), "SELECT 1 AS \"?column?\"");
        assert_eq!(named("SELECT count(*), a FROM t"), "SELECT count(*) AS \"count\", a FROM t");
        assert_eq!(named("SELECT pg_catalog.version()"), "SELECT pg_catalog.version() AS \"version\"");
        assert_eq!(named("SELECT id::TEXT FROM t"), "SELECT id::TEXT AS \"id\" FROM t");
        assert_eq!(named("SELECT 1::TEXT"), "SELECT 1::TEXT AS \"text\"");
        assert_eq!(named("SELECT x AS y FROM t"), "SELECT x AS y FROM t");
        assert_eq!(named("SELECT TIMESTAMP '2024-01-01'"), "SELECT TIMESTAMP '2024-01-01' AS \"timestamp\"");
        assert_eq!(named("SELECT INTERVAL '1 day'"), "SELECT INTERVAL '1 day' AS \"interval\"");
        assert_eq!(named("SELECT 1::numeric(10,2)"), "SELECT 1::NUMERIC(10,2) AS \"numeric\"");
        assert_eq!(named("SELECT extract(year FROM ts) FROM t"), "SELECT EXTRACT(YEAR FROM ts) AS \"extract\" FROM t");
        assert!(named("SELECT substring(s FROM 1 FOR 2) FROM t").ends_with("AS \"substring\" FROM t"));
    }

    #[test]
    fn repeated_names_are_made_unique_for_planning() {
        let m = DUPLICATE_MARK;
        // A wildcard's names are known only after planning: the other items may repeat one.
        assert_eq!(named("SELECT *, id FROM t"), format!("SELECT *, id AS \"id{m}1\" FROM t"));
        assert_eq!(named("SELECT t.*, 1 FROM t"), format!("SELECT t.*, 1 AS \"?column?{m}1\" FROM t"));
        assert_eq!(named("SELECT 1, 2"), format!("SELECT 1 AS \"?column?\", 2 AS \"?column?{m}1\""));
        assert_eq!(
            named("SELECT max(a), max(b) FROM t"),
            format!("SELECT max(a) AS \"max\", max(b) AS \"max{m}1\" FROM t")
        );
        assert_eq!(named("SELECT id, x, id FROM t"), format!("SELECT id, x, id AS \"id{m}2\" FROM t"));
        assert_eq!(named("SELECT 1 AS a, 2 AS a"), format!("SELECT 1 AS a, 2 AS \"a{m}1\""));
        assert_eq!(named("INSERT INTO t SELECT i, i FROM s"), format!("INSERT INTO t SELECT i, i AS \"i{m}1\" FROM s"));
        assert_eq!(shown_name(&format!("max{m}1")), "max");
        assert_eq!(
            named("SELECT id, id FROM a UNION ALL SELECT id, id FROM b"),
            format!("SELECT id, id AS \"id{m}1\" FROM a UNION ALL SELECT id, id AS \"id{m}1\" FROM b")
        );
    }

    #[test]
    fn a_view_keeps_repeated_names_for_planning_to_refuse() {
        let Statement::Query(mut q) =
            Parser::parse_sql(&PostgreSqlDialect {}, "SELECT max(a), max(b), 1 FROM t").unwrap().remove(0)
        else {
            unreachable!()
        };
        name_view_columns(&mut q);
        assert_eq!(q.to_string(), "SELECT max(a), max(b), 1 AS \"?column?\" FROM t");
    }
}
