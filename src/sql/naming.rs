//! Output column names the way Postgres chooses them.
//!
//! DataFusion names an unaliased expression after its text (`count(*)`, `Int64(1)`);
//! Postgres names it after the function (`count`), the cast's inner column or type, or
//! `?column?`. Drivers and BI tools show and key on these names, so the outermost SELECT of a
//! query gets explicit aliases before planning. An alias is added only when it is unique in
//! the select list (DataFusion rejects duplicate output names where Postgres allows them).

use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement};

/// Adds Postgres-style aliases to the unaliased expressions of a query's select list.
pub fn name_output_columns(stmt: &mut Statement) {
    let Statement::Query(q) = stmt else { return };
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    let names: Vec<Option<String>> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(pg_name(e)),
            SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
            _ => None,
        })
        .collect();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            continue; // DataFusion already names a column after itself.
        }
        let Some(name) = names[i].clone() else {
            continue;
        };
        if names.iter().filter(|n| n.as_deref() == Some(name.as_str())).count() == 1 {
            *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::with_quote('"', name) };
        }
    }
}

fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The name Postgres gives an unaliased select-list expression.
fn pg_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name).unwrap_or_else(unnamed),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_else(unnamed),
        Expr::Cast { expr, data_type, .. } => match pg_name(expr) {
            n if n == "?column?" => {
                let t = data_type.to_string().to_lowercase();
                t.split('(').next().unwrap_or(&t).trim().to_string()
            }
            n => n,
        },
        Expr::Nested(inner) => pg_name(inner),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        _ => unnamed(),
    }
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
    }

    #[test]
    fn duplicate_names_are_left_alone() {
        assert_eq!(named("SELECT 1, 2"), "SELECT 1, 2");
        assert_eq!(named("SELECT max(a), max(b) FROM t"), "SELECT max(a), max(b) FROM t");
    }
}
