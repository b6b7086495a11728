//! Rewrites of catalog queries that real clients send and DataFusion cannot plan, applied to
//! the SQL text before parsing. Each names the client it is for; each replaces a construct
//! whose answer is fixed in Headwater (it has no TOAST tables, no inheritance, ...), so the
//! rewrite gives the answer Postgres would give here. [`rewrite_statement`] handles one
//! general construct on the parsed statement: `ARRAY(subquery)`. The rest
//! (`OPERATOR(pg_catalog.~)`, `::regclass`, ...) is datafusion-pg-catalog's.

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, visit_relations, AccessExpr, BinaryOperator, DataType, Expr,
    FunctionArguments, GroupByExpr, JoinOperator, SelectItem, SetExpr, Statement, TableAliasColumnDef, TableFactor,
    Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// (text clients send, what it means in Headwater)
const REWRITES: &[(&str, &str)] = &[
    // psql `\d+`: the table's reloptions plus its TOAST table's; Headwater has neither.
    ("c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)", "CAST(NULL AS TEXT[])"),
    // psql `\dp`: column privileges; Headwater grants on whole relations, `attacl` is NULL.
    ("pg_catalog.array_to_string(attacl, E'\\n  ')", "attacl"),
    // ... and row-level policies: there are none (`pg_policy` is empty).
    ("WHERE oid = ANY (polroles)", "WHERE FALSE"),
];

/// Grafana's search-path test (`CASE WHEN trim(s[i]) = '"$user"' THEN user ...`) is in
/// datafusion-pg-catalog's list of replaced texts, where it becomes `''` and so never matches;
/// Headwater runs it (see `FromFunctions`, `bare_user`, `in_subquery_as_array`), so the
/// spelling `current_user` (same meaning) keeps it off that list.
static GRAFANA_USER: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)THEN\s+user\s+ELSE").expect("valid regex"));

/// `CREATE [OR REPLACE] RECURSIVE VIEW name (columns) AS query`, which Postgres defines as
/// `CREATE VIEW name AS WITH RECURSIVE name (columns) AS (query) SELECT columns FROM name`
/// and the parser does not know (up to the statement's `;`).
static RECURSIVE_VIEW: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r#"(?is)\bCREATE\s+(OR\s+REPLACE\s+)?RECURSIVE\s+VIEW\s+((?:[\w"]+\.)?([\w"]+))\s*\(([^)]*)\)\s*AS\s+([^;]*)"#,
    )
    .expect("valid regex")
});

/// `sql` with the known client constructs replaced.
pub fn rewrite(sql: &str) -> Cow<'_, str> {
    let mut out = match GRAFANA_USER.is_match(sql) {
        true => Cow::Owned(GRAFANA_USER.replace_all(sql, "THEN current_user ELSE").into_owned()),
        false => Cow::Borrowed(sql),
    };
    if RECURSIVE_VIEW.is_match(&out) {
        let replaced = RECURSIVE_VIEW
            .replace_all(&out, "CREATE ${1}VIEW $2 AS WITH RECURSIVE $3 ($4) AS ($5) SELECT $4 FROM $3")
            .into_owned();
        out = Cow::Owned(replaced);
    }
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
    let _ = stmt.visit(&mut FromFunctions);
    super::rewrites::statement(stmt);
    let _ = stmt.visit(&mut QualifyOwnPgTables);
    let _ = stmt.visit(&mut SeriesInSelectLists);
    if reads_catalog(stmt) {
        if let Statement::Query(q) = stmt {
            unalias_duplicates(q.body.as_mut());
        }
        let _ = visit_expressions_mut(stmt, |e| {
            if over_empty_catalog(e) {
                *e = Expr::value(Value::Null);
            } else {
                aggregate_scalar_subquery(e);
                boolean_literal(e);
                in_subquery_as_array(e);
            }
            ControlFlow::<()>::Continue(())
        });
    }
    let _ = visit_expressions_mut(stmt, |e| {
        let rewritten = array_subquery(e)
            .or_else(|| bytea_literal(e))
            .or_else(|| generate_subscripts(e))
            .or_else(|| expandarray(e))
            .or_else(|| composite_field(e))
            .or_else(|| regclass_cast(e))
            .or_else(|| bare_user(e))
            .or_else(|| super::rewrites::expression(e));
        if let Some(rewritten) = rewritten {
            *e = rewritten;
        }
        like_escape(e);
        ControlFlow::<()>::Continue(())
    });
}

/// [`series_in_select_list`] in every query of a statement: the top one, `INSERT ... SELECT`,
/// subqueries, CTEs, and each side of a set operation (`INSERT INTO t SELECT
/// generate_series(1, 3)` inserted one list into an integer column, refused with a type error).
struct SeriesInSelectLists;

impl VisitorMut for SeriesInSelectLists {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut datafusion::sql::sqlparser::ast::Query) -> ControlFlow<()> {
        fn each_select(body: &mut SetExpr) {
            match body {
                SetExpr::SetOperation { left, right, .. } => {
                    each_select(left);
                    each_select(right);
                }
                body => series_in_select_list(body),
            }
        }
        each_select(query.body.as_mut());
        ControlFlow::Continue(())
    }
}

/// `SELECT generate_series(1, 3)` is three rows in Postgres (a set-returning function in the
/// select list); DataFusion's `generate_series` gives one list, which `unnest` turns into the
/// rows. The column keeps the function's name.
fn series_in_select_list(body: &mut SetExpr) {
    use datafusion::sql::sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident, ObjectName, SelectItem,
    };
    let SetExpr::Select(select) = body else { return };
    for item in &mut select.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e.clone(), None),
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
            _ => continue,
        };
        let Expr::Function(f) = &expr else { continue };
        let name = f.name.0.last().map(|p| p.to_string().to_ascii_lowercase()).unwrap_or_default();
        if name != "generate_series" {
            continue;
        }
        let unnest = Expr::Function(Function {
            name: ObjectName::from(vec![Ident::new("unnest")]),
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(expr.clone()))],
                clauses: vec![],
            }),
            ..f.clone()
        });
        *item = SelectItem::ExprWithAlias {
            expr: unnest,
            alias: alias.unwrap_or_else(|| Ident::with_quote('"', "generate_series")),
        };
    }
}

/// Undoes datafusion-pg-catalog's `AliasDuplicatedProjectionRewrite`, which its parser
/// applies to catalog queries (`SELECT n.oid, n.* ...`, DBeaver's): `n.oid AS __alias_oid`
/// back to `n.oid`, so the client sees the column's name; `sql::naming` plans the repeat.
fn unalias_duplicates(body: &mut datafusion::sql::sqlparser::ast::SetExpr) {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr};
    let SetExpr::Select(select) = body else { return };
    for item in &mut select.projection {
        if let SelectItem::ExprWithAlias { expr, alias } = item {
            let name = match expr {
                Expr::Identifier(i) => Some(&i.value),
                Expr::CompoundIdentifier(parts) => parts.last().map(|i| &i.value),
                _ => None,
            };
            if alias.quote_style.is_none() && name.is_some_and(|n| alias.value == format!("__alias_{n}")) {
                *item = SelectItem::UnnamedExpr(expr.clone());
            }
        }
    }
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

/// Functions in FROM (Grafana: `generate_series(...) AS i, string_to_array(...) s`): Postgres
/// names the single output column after the alias and lets any function be a one-row table;
/// DataFusion names `generate_series`' column `value` and only knows table functions. So
/// `generate_series(..) AS i` gets the column alias `i(i)`, and other functions become the
/// derived table `(SELECT f(..) AS s) AS s`.
struct FromFunctions;

const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest"];

impl VisitorMut for FromFunctions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias: Some(alias), args: Some(args), .. } = factor else {
            return ControlFlow::Continue(());
        };
        if !alias.columns.is_empty() {
            return ControlFlow::Continue(());
        }
        let function = name.0.last().map(|p| p.to_string().to_ascii_lowercase()).unwrap_or_default();
        if TABLE_FUNCTIONS.contains(&function.as_str()) {
            if function == "generate_series" {
                alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
            }
            return ControlFlow::Continue(());
        }
        let arguments: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
        let sql =
            format!("SELECT * FROM (SELECT {name}({}) AS {}) AS {}", arguments.join(", "), alias.name, alias.name);
        if let Ok(Statement::Query(q)) =
            Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql).and_then(|mut p| p.parse_statement())
        {
            if let SetExpr::Select(select) = *q.body {
                if let Some(from) = select.from.into_iter().next() {
                    *factor = from.relation;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether the statement reads `pg_catalog` or `information_schema` (a client's catalog query).
pub fn reads_catalog(stmt: &Statement) -> bool {
    visit_relations(stmt, |name| {
        let parts: Vec<String> = name.0.iter().map(|p| p.to_string().to_ascii_lowercase()).collect();
        let system = parts.first().is_some_and(|s| s == "pg_catalog" || s == "information_schema")
            || parts.last().is_some_and(|t| t.starts_with("pg_"));
        if system {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Catalog tables that are always empty in Headwater: no column defaults in the catalog, no
/// sequences, inheritance, triggers, policies, extended statistics, publications, partitions,
/// foreign tables or enums.
const EMPTY_CATALOG_TABLES: &[&str] = &[
    "pg_attrdef",
    "pg_sequence",
    "pg_inherits",
    "pg_trigger",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_partitioned_table",
    "pg_foreign_table",
    "pg_enum",
];

/// A scalar subquery that inner-joins one of [`EMPTY_CATALOG_TABLES`] returns no row, so its
/// value is NULL. Replacing it is exact, and spares DataFusion correlations it cannot run
/// (SQLAlchemy's `get_columns` correlates `pg_attrdef` and `pg_sequence` through CASE and
/// functions of outer columns).
fn over_empty_catalog(e: &Expr) -> bool {
    let Expr::Subquery(q) = e else { return false };
    let SetExpr::Select(select) = q.body.as_ref() else { return false };
    let empty = |f: &TableFactor| match f {
        TableFactor::Table { name, .. } => {
            name.0.last().is_some_and(|p| EMPTY_CATALOG_TABLES.contains(&p.to_string().to_ascii_lowercase().as_str()))
        }
        _ => false,
    };
    select.from.iter().any(|t| {
        empty(&t.relation)
            || t.joins.iter().any(|j| {
                matches!(j.join_operator, JoinOperator::Inner(_) | JoinOperator::Join(_)) && empty(&j.relation)
            })
    })
}

/// Boolean columns of the catalog that clients compare with `'t'`/`'f'` (SQLAlchemy 1.4's
/// `ix.indisprimary = 'f'`); Postgres casts the literal, DataFusion refuses the comparison.
const BOOLEAN_CATALOG_COLUMNS: &[&str] = &[
    "indisprimary",
    "indisunique",
    "indisvalid",
    "indisclustered",
    "indimmediate",
    "attnotnull",
    "attisdropped",
    "atthasdef",
    "relhasindex",
    "relispartition",
    "rolsuper",
    "rolcanlogin",
    "datistemplate",
    "datallowconn",
    "typnotnull",
    "condeferrable",
    "condeferred",
    "convalidated",
];

/// `catalog_bool_column = 't'` → `= true` (and `'f'`, `'true'`, `'false'`), for
/// [`BOOLEAN_CATALOG_COLUMNS`].
fn boolean_literal(e: &mut Expr) {
    let Expr::BinaryOp { left, op, right } = e else { return };
    if !matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
        return;
    }
    let is_bool_column = |x: &Expr| {
        let name = match x {
            Expr::Identifier(i) => &i.value,
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(i) => &i.value,
                None => return false,
            },
            _ => return false,
        };
        BOOLEAN_CATALOG_COLUMNS.contains(&name.to_ascii_lowercase().as_str())
    };
    let as_bool = |x: &Expr| match x {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => match s.to_ascii_lowercase().as_str() {
                "t" | "true" => Some(true),
                "f" | "false" => Some(false),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    if is_bool_column(left) {
        if let Some(b) = as_bool(right) {
            **right = Expr::value(Value::Boolean(b));
        }
    } else if is_bool_column(right) {
        if let Some(b) = as_bool(left) {
            **left = Expr::value(Value::Boolean(b));
        }
    }
}

/// In catalog queries, `x IN (SELECT e FROM ...)` becomes `array_has((SELECT array_agg(e) FROM
/// ...), x)`: DataFusion runs IN-subqueries only as joins, not inside a select-list CASE
/// (Grafana's search-path test). Over catalog rows the NULL corner of IN does not arise.
fn in_subquery_as_array(e: &mut Expr) {
    let Expr::InSubquery { expr, subquery, negated } = e else { return };
    let SetExpr::Select(select) = subquery.body.as_ref() else { return };
    let [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] = select.projection.as_slice()
    else {
        return;
    };
    let mut aggregated = subquery.clone();
    let SetExpr::Select(s) = aggregated.body.as_mut() else { return };
    let Ok(agg) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_agg({value})"))
        .and_then(|mut p| p.parse_expr())
    else {
        return;
    };
    s.projection = vec![SelectItem::UnnamedExpr(agg)];
    let not = if *negated { "NOT " } else { "" };
    let sql = format!("{not}coalesce(array_has(({aggregated}), {expr}), false)");
    if let Ok(rewritten) = Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql).and_then(|mut p| p.parse_expr()) {
        *e = rewritten;
    }
}

const AGGREGATES: &[&str] =
    &["count", "sum", "min", "max", "avg", "array_agg", "string_agg", "bool_and", "bool_or", "every", "first_value"];

/// In catalog queries, `(SELECT e FROM ... WHERE <correlated> [ORDER BY o] [LIMIT 1])`, which
/// returns at most one row by the catalog's keys, becomes `(SELECT first_value(e [ORDER BY o])
/// FROM ...)`: DataFusion only runs correlated scalar subqueries that aggregate. (SQLAlchemy's
/// `get_columns`, psql `\dT`, JDBC metadata.) Only catalog queries: over user tables a subquery
/// that returns two rows must stay an error.
fn aggregate_scalar_subquery(e: &mut Expr) {
    let Expr::Subquery(q) = e else { return };
    if q.limit_clause.as_ref().is_some_and(|l| l.to_string().trim() != "LIMIT 1") {
        return;
    }
    let SetExpr::Select(select) = q.body.as_mut() else { return };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty());
    if grouped || select.having.is_some() || select.distinct.is_some() {
        return;
    }
    let [item] = select.projection.as_mut_slice() else { return };
    let (SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) = item else { return };
    let aggregated = visit_expressions(value, |x| match x {
        Expr::Function(f) if AGGREGATES.iter().any(|a| f.name.to_string().eq_ignore_ascii_case(a)) => {
            ControlFlow::Break(())
        }
        Expr::Subquery(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    if aggregated {
        return;
    }
    let order = q.order_by.as_ref().map(|o| format!(" {o}")).unwrap_or_default();
    let Ok(first) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("first_value({value}{order})"))
        .and_then(|mut p| p.parse_expr())
    else {
        return;
    };
    *value = first;
    q.order_by = None;
    q.limit_clause = None;
}

/// `a LIKE p ESCAPE '/'` (SQLAlchemy's inspector): DataFusion only knows the backslash as the
/// escape character, so the pattern is translated by `like_escape(p, '/')` at run time.
fn like_escape(e: &mut Expr) {
    let (Expr::Like { pattern, escape_char, .. } | Expr::ILike { pattern, escape_char, .. }) = e else { return };
    let Some(escape) = escape_char.take() else { return };
    let c = match &escape.value {
        Value::SingleQuotedString(c) | Value::EscapedStringLiteral(c) => c.clone(),
        _ => {
            *escape_char = Some(escape);
            return;
        }
    };
    if c == "\\" {
        *escape_char = Some(escape);
        return;
    }
    let call = format!("like_escape({pattern}, '{}')", c.replace('\'', "''"));
    match Parser::new(&PostgreSqlDialect {}).try_with_sql(&call).and_then(|mut p| p.parse_expr()) {
        Ok(translated) => **pattern = translated,
        Err(_) => *escape_char = Some(escape),
    }
}

/// `generate_subscripts(arr, 1)` (SQLAlchemy's `get_pk_constraint`, next to `unnest(arr)`):
/// the set-returning `unnest(range(1, array_length(arr, 1) + 1))`, which DataFusion zips with
/// the other `unnest` of the select list as Postgres does.
fn generate_subscripts(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else { return None };
    if !f.name.to_string().eq_ignore_ascii_case("generate_subscripts") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    let [array, _dimension] = list.args.as_slice() else { return None };
    let sql = format!("unnest(range(1, CAST(array_length({array}, 1) AS BIGINT) + 1))");
    Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql).and_then(|mut p| p.parse_expr()).ok()
}

/// `information_schema._pg_expandarray(arr)` (pgjdbc `getPrimaryKeys`): a set-returning
/// function of `(x, n)` rows, here `unnest(hw_expandarray(arr))` over a list of structs.
fn expandarray(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else { return None };
    if !f.name.0.last().is_some_and(|p| p.to_string().eq_ignore_ascii_case("_pg_expandarray")) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    let [array] = list.args.as_slice() else { return None };
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("unnest(hw_expandarray({array}))"))
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `(row_expr).field` (Postgres composite field access; pgjdbc reads `(keys).x`): DataFusion
/// plans `get_field(row_expr, 'field')` on structs, but not the dotted form on an expression.
fn composite_field(e: &Expr) -> Option<Expr> {
    let Expr::CompoundFieldAccess { root, access_chain } = e else { return None };
    if !matches!(root.as_ref(), Expr::Nested(_)) {
        return None;
    }
    let mut sql = root.to_string();
    for access in access_chain {
        let AccessExpr::Dot(Expr::Identifier(field)) = access else { return None };
        sql = format!("get_field({sql}, '{}')", field.value.to_lowercase().replace('\'', "''"));
    }
    Parser::new(&PostgreSqlDialect {}).try_with_sql(&sql).and_then(|mut p| p.parse_expr()).ok()
}

/// `CAST(expr AS regclass)` of a computed name (Metabase: `format('%I.%I', schema, table)::
/// regclass`): `to_regclass(expr)`, which looks the name up when the query runs. Literal names
/// (`'pg_class'::regclass`) stay with datafusion-pg-catalog, which resolves them when planning.
fn regclass_cast(e: &Expr) -> Option<Expr> {
    let Expr::Cast { data_type, expr, .. } = e else { return None };
    if !data_type.to_string().eq_ignore_ascii_case("regclass") {
        return None;
    }
    if let Expr::Value(v) = expr.as_ref() {
        if matches!(v.value, Value::SingleQuotedString(_) | Value::Number(..)) {
            return None;
        }
    }
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("to_regclass({expr})"))
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// Unquoted `user` is Postgres's `current_user` (a reserved word; a column called user must be
/// quoted), used by Grafana's search-path query.
fn bare_user(e: &Expr) -> Option<Expr> {
    let is_user = match e {
        Expr::Identifier(i) => i.quote_style.is_none() && i.value.eq_ignore_ascii_case("user"),
        // sqlparser reads the keyword as a call without parentheses.
        Expr::Function(f) => {
            matches!(f.args, FunctionArguments::None) && f.name.to_string().eq_ignore_ascii_case("user")
        }
        _ => false,
    };
    if !is_user {
        return None;
    }
    Parser::new(&PostgreSqlDialect {}).try_with_sql("session_user()").and_then(|mut p| p.parse_expr()).ok()
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
    let aggregate = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_agg({value}{order})"))
        .ok()?
        .parse_expr()
        .ok()?;
    select.projection = vec![SelectItem::UnnamedExpr(aggregate)];
    Some(Expr::Subquery(q))
}

/// `pg_stat_activity`, which Headwater adds to `pg_catalog` (datafusion-pg-catalog qualifies
/// its own tables): unqualified, it names the `pg_catalog` table, as on Postgres where
/// `pg_catalog` comes first in every search path. Here because both parsing paths (catalog
/// queries go through the crate's own rules) end in [`rewrite_statement`].
struct QualifyOwnPgTables;

impl VisitorMut for QualifyOwnPgTables {
    type Break = ();

    fn pre_visit_table_factor(&mut self, table: &mut TableFactor) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
        if let TableFactor::Table { name, args: None, .. } = table {
            if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
                if ident.value.eq_ignore_ascii_case("pg_stat_activity") {
                    *name = ObjectName(vec![
                        ObjectNamePart::Identifier(Ident::new("pg_catalog")),
                        ObjectNamePart::Identifier(Ident::new("pg_stat_activity")),
                    ]);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_views_become_views_over_a_recursive_cte() {
        assert_eq!(
            rewrite("CREATE OR REPLACE RECURSIVE VIEW s.nums (n) AS VALUES (1) UNION ALL SELECT n+1 FROM nums WHERE n < 5; SELECT 1"),
            "CREATE OR REPLACE VIEW s.nums AS WITH RECURSIVE nums (n) AS (VALUES (1) UNION ALL SELECT n+1 FROM nums WHERE n < 5) \
             SELECT n FROM nums; SELECT 1"
        );
        assert_eq!(
            rewrite("create recursive view v(a, b) as select 1, 2"),
            "CREATE VIEW v AS WITH RECURSIVE v (a, b) AS (select 1, 2) SELECT a, b FROM v"
        );
    }

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
    fn catalog_subqueries_aggregate() {
        let sql = "SELECT (SELECT t.typname FROM pg_type t WHERE t.oid = a.atttypid) FROM pg_attribute a";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        rewrite_statement(&mut stmt);
        assert!(stmt.to_string().contains("(SELECT first_value(t.typname) FROM pg_type"), "{stmt}");
        let empty = "SELECT (SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid) FROM pg_attribute a";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, empty).unwrap().remove(0);
        rewrite_statement(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT NULL FROM pg_attribute a");
        let user = "SELECT (SELECT b.x FROM b WHERE b.y = a.y) FROM a";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, user).unwrap().remove(0);
        rewrite_statement(&mut stmt);
        assert_eq!(stmt.to_string(), user);
    }

    #[test]
    fn functions_in_from_like_postgres() {
        let sql = "SELECT s[i] FROM generate_series(1, 2) AS i, string_to_array('a,b', ',') s";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        rewrite_statement(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT s[i] FROM generate_series(1, 2) AS i (i), (SELECT string_to_array('a,b', ',') AS s) AS s"
        );
    }

    #[test]
    fn bytea_hex_literal() {
        let mut stmt =
            Parser::parse_sql(&PostgreSqlDialect {}, r"SELECT '\xDEADbeef'::bytea, 'x'::bytea").unwrap().remove(0);
        rewrite_statement(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT X'DEADbeef', 'x'::BYTEA");
    }
}
