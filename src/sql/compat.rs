//! Rewrites of catalog queries that real clients send and DataFusion cannot plan, applied to
//! the SQL text before parsing. Each names the client it is for; each replaces a construct
//! whose answer is fixed in Headwater (it has no TOAST tables, no inheritance, ...), so the
//! rewrite gives the answer Postgres would give here. [`rewrite_statement`] handles one
//! general construct on the parsed statement: `ARRAY(subquery)`. The rest
//! (`OPERATOR(pg_catalog.~)`, `::regclass`, ...) is datafusion-pg-catalog's.

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, DataType, Expr, FunctionArguments, SelectItem, SetExpr, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// (text clients send, what it means in Headwater)
const REWRITES: &[(&str, &str)] = &[
    // psql `\d+`: the table's reloptions plus its TOAST table's; Headwater has neither.
    (
        "c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)",
        "CAST(NULL AS TEXT[])",
    ),
];

/// `sql` with the known client constructs replaced.
pub fn rewrite(sql: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(sql);
    for (from, to) in REWRITES {
        if out.contains(from) {
            out = Cow::Owned(out.replace(from, to));
        }
    }
    out
}

/// Rewrites `ARRAY(SELECT e FROM ... [ORDER BY o])` (psql `\du`, pgjdbc, BI tools), which
/// DataFusion cannot plan, into the scalar subquery `(SELECT array_agg(e [ORDER BY o]) FROM
/// ...)`, which it can, correlated or not. One difference stays: over no rows Postgres gives
/// `{}`, `array_agg` gives NULL.
pub fn rewrite_statement(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let Some(rewritten) = array_subquery(e).or_else(|| bytea_literal(e)) {
            *e = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `'\\xdeadbeef'::bytea` (psycopg2 and hand-written SQL) is the bytes 0xdeadbeef in
/// Postgres; DataFusion would take the text's own bytes. The hex literal `X'deadbeef'` means
/// what Postgres means.
fn bytea_literal(e: &Expr) -> Option<Expr> {
    let Expr::Cast { data_type: DataType::Bytea, expr, .. } = e else { return None };
    let Expr::Value(v) = expr.as_ref() else { return None };
    let (Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s)) = &v.value else { return None };
    let hex = s.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Expr::value(Value::HexStringLiteral(hex.to_string())))
}

fn array_subquery(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else { return None };
    let FunctionArguments::Subquery(q) = &f.args else { return None };
    if !f.name.to_string().eq_ignore_ascii_case("array") {
        return None;
    }
    let mut q = q.clone();
    let SetExpr::Select(select) = q.body.as_mut() else { return None };
    let [item] = select.projection.as_slice() else { return None };
    let value = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    let order = q.order_by.take().map(|o| format!(" {o}")).unwrap_or_default();
    let aggregate = Parser::new(&PostgreSqlDialect {}).try_with_sql(&format!("array_agg({value}{order})")).ok()?.parse_expr().ok()?;
    select.projection = vec![SelectItem::UnnamedExpr(aggregate)];
    Some(Expr::Subquery(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_subquery_becomes_array_agg() {
        let sql = "SELECT ARRAY(SELECT b.x FROM t b WHERE b.y = a.y ORDER BY b.x) AS xs FROM a";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        rewrite_statement(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT (SELECT array_agg(b.x ORDER BY b.x) FROM t b WHERE b.y = a.y) AS xs FROM a"
        );
    }

    #[test]
    fn bytea_hex_literal() {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, r"SELECT '\xDEADbeef'::bytea, 'x'::bytea").unwrap().remove(0);
        rewrite_statement(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT X'DEADbeef', 'x'::BYTEA");
    }
}
