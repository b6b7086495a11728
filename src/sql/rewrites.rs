//! Rewrites that make answers Postgres's where DataFusion's differ (issue 31), applied to
//! every statement before planning (from [`super::compat::rewrite_statement`], so views get
//! them too). Each was found by a differential test against PostgreSQL
//! (`tests/integration/pg_differential.rs`) or is one of the examples.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, LimitClause,
    ObjectName, Query, SelectItem, SetExpr, SetOperator, SetQuantifier, Statement, UnaryOperator, Value, VisitMut,
    VisitorMut,
};

/// Statement-level rewrites: `FETCH FIRST n ROWS ONLY`, `EXCEPT ALL` / `INTERSECT ALL`.
pub fn statement(stmt: &mut Statement) {
    let _ = stmt.visit(&mut FetchAsLimit);
    let _ = stmt.visit(&mut MultisetOperations);
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        let Expr::Value(v) = e else { return ControlFlow::<()>::Continue(()) };
        let Value::Number(text, _) = &mut v.value else { return ControlFlow::Continue(()) };
        let exponent = text.contains(['e', 'E']);
        if let Some(plain) = plain_decimal(text) {
            *text = plain;
        } else if (exponent || (text.contains('.') && text.chars().filter(char::is_ascii_digit).count() > 38))
            && fits_a_double(text)
        {
            // Past 38 digits (`1e308`): a double, the widest type there is here. Past a
            // double's range (`1e400`, `1e-400`) it stays as written and is refused (0A000)
            // rather than read as Infinity or 0.
            *e = Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: Box::new(Expr::value(Value::SingleQuotedString(text.clone()))),
                data_type: DataType::DoublePrecision,
                array: false,
                format: None,
            };
        }
        ControlFlow::Continue(())
    });
}

/// Whether `text` reads as a finite double, and as zero only when it is zero.
fn fits_a_double(text: &str) -> bool {
    let zero = !text.split(['e', 'E']).next().unwrap_or("").chars().any(|c| c.is_ascii_digit() && c != '0');
    text.parse::<f64>().is_ok_and(|v| v.is_finite() && (v != 0.0 || zero))
}

/// `1.5e-2` → `0.015`, `1e3` → `1000`: numeric literals with an exponent written out, as
/// Postgres reads them (numeric, exact). DataFusion's decimal parsing of literals
/// (`parse_float_as_decimal`) mis-scales exponents ("Scale 4294967293 exceeds maximum
/// precision"). `None` for text without an exponent, or whose plain form would need more
/// than 38 digits (those become doubles: Postgres's numeric goes further than Arrow's
/// 38-digit decimals).
pub fn plain_decimal(text: &str) -> Option<String> {
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let exponent: i64 = exponent.parse().ok()?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !(int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())) || int.len() + frac.len() == 0 {
        return None;
    }
    // All digits, and where the point goes after shifting by the exponent.
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exponent;
    if !(-38..=38).contains(&point) || digits.len() > 38 {
        return None;
    }
    let (whole, fraction) = if point <= 0 {
        (String::from("0"), format!("{}{digits}", "0".repeat((-point) as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    Some(if fraction.is_empty() { whole.to_string() } else { format!("{whole}.{fraction}") })
}

/// `EXCEPT ALL` / `INTERSECT ALL` keep duplicates as multisets: a row that is m times on the
/// left and n times on the right is max(m − n, 0) / min(m, n) times in the result. DataFusion
/// plans them as anti/semi joins, which drop or keep every copy (`{1,1,2} EXCEPT ALL {1}`
/// gave `{2}`). Numbering the copies of each row on both sides (`row_number() OVER
/// (PARTITION BY every column)`) makes every copy distinct, and then the plain EXCEPT /
/// INTERSECT of the numbered rows is exactly the multiset answer.
struct MultisetOperations;

impl VisitorMut for MultisetOperations {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        multiset_operations(query.body.as_mut());
        ControlFlow::Continue(())
    }
}

fn multiset_operations(body: &mut SetExpr) {
    let SetExpr::SetOperation { op, set_quantifier, left, right } = body else { return };
    multiset_operations(left.as_mut());
    multiset_operations(right.as_mut());
    let keyword = match op {
        SetOperator::Except if *set_quantifier == SetQuantifier::All => "EXCEPT",
        SetOperator::Intersect if *set_quantifier == SetQuantifier::All => "INTERSECT",
        _ => return,
    };
    // Without the left side's column names (a `*`), the operation stays DataFusion's.
    let Some(names) = output_names(left) else { return };
    let columns: Vec<String> = (1..=names.len()).map(|i| format!("hw_c{i}")).collect();
    let numbered = |side: &SetExpr, alias: &str| {
        format!(
            "SELECT *, row_number() OVER (PARTITION BY {list}) AS hw_copy FROM ({side}) AS {alias}({list})",
            list = columns.join(", ")
        )
    };
    let shown: Vec<String> = columns
        .iter()
        .zip(&names)
        .map(|(c, n)| format!("{c} AS {}", datafusion::sql::sqlparser::ast::Ident::with_quote('"', n)))
        .collect();
    let sql = format!(
        "SELECT {} FROM ({} {keyword} {}) AS hw_multiset",
        shown.join(", "),
        numbered(left, "hw_left"),
        numbered(right, "hw_right")
    );
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    if let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql) {
        if let Some(Statement::Query(q)) = parsed.pop() {
            *body = SetExpr::Query(q);
        }
    }
}

/// The output column names of a set operation's side, as Postgres names them; `None` when
/// they are known only after planning (`*`).
fn output_names(side: &SetExpr) -> Option<Vec<String>> {
    match side {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) => Some(super::naming::pg_name(e, true)),
                SelectItem::ExprWithAlias { alias, .. } => Some(super::naming::ident_name(alias)),
                _ => None,
            })
            .collect(),
        SetExpr::SetOperation { left, .. } => output_names(left),
        SetExpr::Query(q) => output_names(&q.body),
        SetExpr::Values(v) => v.rows.first().map(|row| (1..=row.len()).map(|i| format!("column{i}")).collect()),
        _ => None,
    }
}

/// Expression rewrites, tried in turn; `None` when none applies.
pub fn expression(e: &Expr) -> Option<Expr> {
    row_null_test(e).or_else(|| in_list_of_expressions(e)).or_else(|| function_alias(e))
}

/// `FETCH FIRST n ROWS ONLY` (the SQL standard's LIMIT; DataFusion: "FETCH clause is not
/// supported yet") is `LIMIT n`; `FETCH FIRST ROW ONLY` is `LIMIT 1`. `WITH TIES` and
/// `PERCENT` stay refused (0A000).
struct FetchAsLimit;

impl VisitorMut for FetchAsLimit {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let Some(fetch) = &query.fetch else { return ControlFlow::Continue(()) };
        if fetch.with_ties || fetch.percent {
            return ControlFlow::Continue(());
        }
        let count = fetch
            .quantity
            .clone()
            .unwrap_or_else(|| Expr::value(datafusion::sql::sqlparser::ast::Value::Number("1".into(), false)));
        match &mut query.limit_clause {
            None => {
                query.limit_clause =
                    Some(LimitClause::LimitOffset { limit: Some(count), offset: None, limit_by: vec![] })
            }
            Some(LimitClause::LimitOffset { limit: limit @ None, .. }) => *limit = Some(count),
            // LIMIT and FETCH together: left for the planner to refuse.
            Some(_) => return ControlFlow::Continue(()),
        }
        query.fetch = None;
        ControlFlow::Continue(())
    }
}

/// Postgres functions DataFusion knows under another name: `mod(a, b)` is `a % b`,
/// `variance` is `var_samp`.
fn function_alias(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else { return None };
    let [name] = f.name.0.as_slice() else { return None };
    let name = name.as_ident()?.value.to_ascii_lowercase();
    match name.as_str() {
        "mod" => {
            let FunctionArguments::List(list) = &f.args else { return None };
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(a)), FunctionArg::Unnamed(FunctionArgExpr::Expr(b))] =
                list.args.as_slice()
            else {
                return None;
            };
            Some(Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(a.clone()),
                op: BinaryOperator::Modulo,
                right: Box::new(b.clone()),
            })))
        }
        "variance" => {
            let mut renamed = f.clone();
            renamed.name = ObjectName::from(vec![Ident::new("var_samp")]);
            Some(Expr::Function(renamed))
        }
        _ => None,
    }
}

/// `x IN (a, CASE ... END)`: DataFusion takes a list whose items evaluate to a scalar over
/// no rows as constants, and a CASE over columns does, so the list was evaluated once over no
/// rows and every row compared with that (wrong answers, found by
/// tests/integration/pg_differential.rs). A list with anything but literals is written as
/// the comparisons it stands for, `(x = a OR x = b)`, which is what IN means in SQL's
/// three-valued logic; lists of literals keep DataFusion's hash set.
fn in_list_of_expressions(e: &Expr) -> Option<Expr> {
    const MAX_EXPANDED: usize = 64;
    let Expr::InList { expr, list, negated } = e else { return None };
    let literal = |item: &Expr| {
        let mut inner = item;
        loop {
            match inner {
                Expr::Value(_) | Expr::TypedString(_) => return true,
                Expr::Cast { expr, .. } | Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => inner = expr.as_ref(),
                _ => return false,
            }
        }
    };
    if list.is_empty() || list.len() > MAX_EXPANDED || list.iter().all(literal) {
        return None;
    }
    let any = list
        .iter()
        .map(|item| Expr::BinaryOp { left: expr.clone(), op: BinaryOperator::Eq, right: Box::new(item.clone()) })
        .reduce(|all, next| Expr::BinaryOp { left: Box::new(all), op: BinaryOperator::Or, right: Box::new(next) })?;
    let any = Expr::Nested(Box::new(any));
    Some(if *negated {
        Expr::Nested(Box::new(Expr::UnaryOp { op: UnaryOperator::Not, expr: Box::new(any) }))
    } else {
        any
    })
}

/// `(a, b) IS NULL` is true when every field is NULL and `(a, b) IS NOT NULL` when none is
/// (Postgres, the SQL standard); DataFusion would test the row value itself, which is never
/// NULL. Found by tests/integration/pg_differential.rs.
fn row_null_test(e: &Expr) -> Option<Expr> {
    let (inner, negated) = match e {
        Expr::IsNull(inner) => (inner.as_ref(), false),
        Expr::IsNotNull(inner) => (inner.as_ref(), true),
        _ => return None,
    };
    let mut row = inner;
    while let Expr::Nested(n) = row {
        row = n.as_ref();
    }
    let Expr::Tuple(fields) = row else { return None };
    let tests = fields.iter().map(|f| {
        let field = Box::new(f.clone());
        if negated {
            Expr::IsNotNull(field)
        } else {
            Expr::IsNull(field)
        }
    });
    tests
        .reduce(|all, next| Expr::BinaryOp { left: Box::new(all), op: BinaryOperator::And, right: Box::new(next) })
        .map(|e| Expr::Nested(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::plain_decimal;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        super::super::compat::rewrite_statement(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn exponents_are_written_out() {
        assert_eq!(plain_decimal("1.5e-2").as_deref(), Some("0.015"));
        assert_eq!(plain_decimal("1e3").as_deref(), Some("1000"));
        assert_eq!(plain_decimal("2.5E+1").as_deref(), Some("25"));
        assert_eq!(plain_decimal("12.345e1").as_deref(), Some("123.45"));
        assert_eq!(plain_decimal("0.5e0").as_deref(), Some("0.5"));
        assert_eq!(plain_decimal(".5e1").as_deref(), Some("5"));
        assert_eq!(plain_decimal("1.5"), None);
        assert_eq!(plain_decimal("1e400"), None);
        assert_eq!(rewritten("SELECT 1e400, 1e-400"), "SELECT 1e400, 1e-400");
        assert_eq!(rewritten("SELECT 1.5e-2 * x FROM t"), "SELECT 0.015 * x FROM t");
        assert_eq!(
            rewritten("SELECT 1e308, 1e-30"),
            "SELECT '1e308'::DOUBLE PRECISION, 0.000000000000000000000000000001"
        );
    }

    #[test]
    fn postgres_spellings_become_datafusion_ones() {
        assert_eq!(
            rewritten("SELECT x FROM t ORDER BY x FETCH FIRST 2 ROWS ONLY"),
            "SELECT x FROM t ORDER BY x LIMIT 2"
        );
        assert_eq!(
            rewritten("SELECT x FROM t OFFSET 1 ROWS FETCH NEXT ROW ONLY"),
            "SELECT x FROM t LIMIT 1 OFFSET 1 ROWS"
        );
        assert!(rewritten("SELECT x FROM t FETCH FIRST 2 ROWS WITH TIES").contains("WITH TIES"));
        assert_eq!(rewritten("SELECT mod(a, 3), variance(a) FROM t"), "SELECT (a % 3), var_samp(a) FROM t");
        assert_eq!(rewritten("SELECT (a, b) IS NULL"), "SELECT (a IS NULL AND b IS NULL)");
        assert_eq!(rewritten("SELECT 1 IN (a, 2)"), "SELECT (1 = a OR 1 = 2)");
        assert_eq!(rewritten("SELECT 1 IN (2, 3)"), "SELECT 1 IN (2, 3)");
    }
}
