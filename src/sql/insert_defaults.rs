//! `DEFAULT` in an INSERT as Postgres reads it: `INSERT INTO t DEFAULT VALUES`,
//! `VALUES (1, DEFAULT)`, and rows shorter than the column list (the rest take their
//! defaults). DataFusion plans none of these, so the statement is written out before
//! planning: each `DEFAULT` becomes the column's default expression from the table's
//! `CREATE TABLE` (NULL without one), and short rows are completed the same way.

use datafusion::sql::sqlparser::ast::{
    ColumnOption, Expr, Ident, ObjectName, Parens, SetExpr, Statement, Value, Values,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::Session;
use crate::catalog::Namespace;
use crate::error::{Error, Result};

/// The statement with its defaults written out; `None` when it has nothing to fill.
pub(super) fn fill(s: &Session, stmt: &Statement) -> Result<Option<Statement>> {
    let Statement::Insert(insert) = stmt else { return Ok(None) };
    let values = match insert.source.as_deref() {
        None => None,
        Some(q) => match q.body.as_ref() {
            SetExpr::Values(v) => Some(v),
            _ => return Ok(None),
        },
    };
    let datafusion::sql::sqlparser::ast::TableObject::TableName(name) = &insert.table else { return Ok(None) };
    let table = super::ddl::relation_name(name)?;
    let Some(object) = s.engine().catalog().get(Namespace::Relation, &table) else {
        return Ok(None); // planning reports the missing table
    };
    let width = match (&object.relation, insert.columns.len()) {
        (_, n) if n > 0 => n,
        (Some(crate::catalog::Relation::Table { state, .. }), _) => state.schema().fields().len(),
        _ => return Ok(None),
    };
    let needs = match values {
        None => true,
        Some(v) => v.rows.iter().any(|r| r.len() < width || r.iter().any(is_default)),
    };
    if !needs {
        return Ok(None);
    }
    let defaults = column_defaults(&object.entry.create_sql);
    let all: Vec<String> = defaults.iter().map(|(c, _)| c.clone()).collect();
    let columns: Vec<String> =
        if insert.columns.is_empty() { all.clone() } else { insert.columns.iter().map(column_name).collect() };
    let default_of = |column: &str| -> Expr {
        defaults
            .iter()
            .find(|(c, _)| c == column)
            .and_then(|(_, d)| d.clone())
            .unwrap_or(Expr::Value(Value::Null.into()))
    };
    let mut out = insert.clone();
    match insert.source.as_deref() {
        None => {
            // DEFAULT VALUES: one row, every column its default.
            out.columns = all.iter().map(|c| quoted(c)).collect();
            let row: Vec<Expr> = all.iter().map(|c| default_of(c)).collect();
            out.source = Some(Box::new(values_query(vec![row])?));
        }
        Some(q) => {
            let SetExpr::Values(values) = q.body.as_ref() else { return Ok(None) };
            let mut rows = Vec::with_capacity(values.rows.len());
            for row in &values.rows {
                if row.len() > columns.len() {
                    return Err(Error::Syntax("INSERT has more expressions than target columns".into()));
                }
                let mut filled: Vec<Expr> = Vec::with_capacity(columns.len());
                for (i, column) in columns.iter().enumerate() {
                    filled.push(match row.get(i) {
                        Some(e) if !is_default(e) => e.clone(),
                        _ => default_of(column),
                    });
                }
                rows.push(Parens::with_empty_span(filled));
            }
            if insert.columns.is_empty() {
                out.columns = columns.iter().map(|c| quoted(c)).collect();
            }
            let mut query = q.clone();
            query.body = Box::new(SetExpr::Values(Values { rows, ..values.clone() }));
            out.source = Some(Box::new(query));
        }
    }
    Ok(Some(Statement::Insert(out)))
}

/// An INSERT column (`ObjectName`, possibly qualified) as its normalised name.
fn column_name(name: &ObjectName) -> String {
    name.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default()
}

fn quoted(column: &str) -> ObjectName {
    ObjectName::from(vec![Ident::with_quote('"', column)])
}

fn is_default(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Each column of a `CREATE TABLE` with its `DEFAULT` expression.
fn column_defaults(create_sql: &str) -> Vec<(String, Option<Expr>)> {
    let Ok(mut parsed) = Parser::parse_sql(&PostgreSqlDialect {}, create_sql) else { return vec![] };
    let Some(Statement::CreateTable(ct)) = parsed.pop() else { return vec![] };
    ct.columns
        .iter()
        .map(|c| {
            let default = c.options.iter().find_map(|o| match &o.option {
                ColumnOption::Default(e) => Some(e.clone()),
                _ => None,
            });
            (ident_name(&c.name), default)
        })
        .collect()
}

/// A `VALUES` query of `rows`.
fn values_query(rows: Vec<Vec<Expr>>) -> Result<datafusion::sql::sqlparser::ast::Query> {
    let mut q = match Parser::parse_sql(&PostgreSqlDialect {}, "VALUES (1)").ok().and_then(|mut v| v.pop()) {
        Some(Statement::Query(q)) => *q,
        _ => return Err(Error::Internal("VALUES (1) did not parse".into())),
    };
    if let SetExpr::Values(v) = q.body.as_mut() {
        v.rows = rows.into_iter().map(Parens::with_empty_span).collect();
    }
    Ok(q)
}
