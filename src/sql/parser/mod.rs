//! SQL text → statements: Postgres SQL (through sqlparser and datafusion-pg-catalog's
//! compatibility rewrites) plus Headwater's own statements.
//!
//! Headwater statements (`CREATE CONNECTION`, `SHOW SOURCES`, `SHOW CREATE ...`, ...) are
//! recognised by their first words and parsed here with sqlparser's token API; everything
//! else is handed to sqlparser's Postgres dialect. Inputs made only of standard statements go
//! through [`PostgresCompatibilityParser`], which rewrites what psql and drivers send
//! (`::regclass`, `OPERATOR(pg_catalog.~)`, ...) into SQL DataFusion plans.

mod options;
pub mod roles;
mod sources;

pub use options::SECRET_REFERENCE;
use options::{parse_create_connection, parse_options, secret_value};
use sources::{parse_alter_source, parse_create_source};
pub use sources::{DeclaredColumns, SourceStatement};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::catalog::users::RoleAttributes;
use crate::error::{Error, Result};
use crate::source::TableRef;

pub use crate::catalog::ObjectType;

/// The kind of system a connection points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConnectionKind {
    Mysql,
    Kafka,
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionKind::Mysql => "MYSQL",
            ConnectionKind::Kafka => "KAFKA",
        })
    }
}

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum HwStatement {
    /// A standard SQL statement, executed by the session (DataFusion for queries).
    Sql(Box<Statement>),
    /// `CREATE CONNECTION [IF NOT EXISTS] name TO MYSQL|KAFKA (KEY value, ...)`
    CreateConnection { name: String, if_not_exists: bool, kind: ConnectionKind, options: BTreeMap<String, String> },
    /// `DROP CONNECTION|SOURCE|SINK [IF EXISTS] name [, ...] [CASCADE | RESTRICT]`
    DropObjects { object_type: ObjectType, names: Vec<String>, if_exists: bool, cascade: bool },
    /// `SHOW TABLES | VIEWS | MATERIALIZED VIEWS | SOURCES | SINKS | CONNECTIONS`
    ShowObjects(ObjectType),
    /// `SHOW CREATE TABLE|VIEW|MATERIALIZED VIEW|CONNECTION|SOURCE|SINK name`
    ShowCreate { object_type: ObjectType, name: String },
    /// `CREATE SOURCE [IF NOT EXISTS] name FROM MYSQL CONNECTION conn FOR ... [WITH (...)]`, or
    /// `CREATE SOURCE name (columns) FROM KAFKA CONNECTION conn (TOPIC 't') FORMAT JSON
    /// ENVELOPE ...` ([`SourceStatement`]).
    CreateSource(Box<SourceStatement>),
    /// `ALTER SOURCE name ADD TABLE db.t [AS n], ...` / `ALTER SOURCE name DROP TABLE n, ... [CASCADE]`
    AlterSource { name: String, action: AlterSourceAction },
    /// `CREATE SINK [IF NOT EXISTS] name FROM relation INTO KAFKA CONNECTION conn (TOPIC 't', ...)
    /// [KEY (columns) [NOT ENFORCED]] [FORMAT JSON] [ENVELOPE UPSERT|DEBEZIUM] [WITH (...)]`
    CreateSink(Box<SinkStatement>),
    /// `EXPLAIN MATERIALIZED VIEW name`: the view's dataflow and state sizes.
    ExplainView(String),
    /// `CREATE USER|ROLE [IF NOT EXISTS] name [[WITH] PASSWORD 'pw' | LOGIN | SUPERUSER ...]`;
    /// `login` is the default a USER (true) or ROLE (false) gets without LOGIN/NOLOGIN.
    CreateUser { name: String, if_not_exists: bool, password: Option<Secret>, login: bool, attributes: RoleAttributes },
    /// `ALTER USER|ROLE name [WITH] PASSWORD 'pw' | PASSWORD NULL | SUPERUSER | LOGIN ...`
    AlterUser { name: String, password: Option<Option<Secret>>, attributes: RoleAttributes },
    /// `DROP USER|ROLE [IF EXISTS] name, ...`
    DropUsers { names: Vec<String>, if_exists: bool },
    /// `GRANT privileges ON objects TO roles` / `REVOKE privileges ON objects FROM roles`
    Grant(roles::GrantStatement),
    /// `GRANT role, ... TO member, ...` / `REVOKE role, ... FROM member, ...`
    GrantRoles { roles: Vec<String>, members: Vec<String>, revoke: bool },
    /// `CREATE SECRET [IF NOT EXISTS] name AS 'value'` (Materialize's spelling)
    CreateSecret { name: String, if_not_exists: bool, value: Secret },
    /// `ALTER SECRET name AS 'value'`
    AlterSecret { name: String, value: Secret },
    /// `ALTER TABLE|VIEW|MATERIALIZED VIEW|SOURCE|SINK|CONNECTION name OWNER TO role`
    AlterOwner { object_type: ObjectType, name: String, owner: String },
    /// A driver's fixed query answered without DataFusion (asyncpg's type introspection).
    ClientQuery(super::client_queries::ClientQuery),
    /// A Headwater statement whose feature is not built yet (`CREATE SINK`, ...).
    Unsupported(String),
}

/// Names the outermost select list's unaliased `current_user`, `current_catalog`, `user`,
/// `session_user`, `current_role` and `current_schema` as Postgres does, before the rewrite to
/// DataFusion's functions (`session_user()`, `current_database()`) renames them.
fn name_special_registers(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, FunctionArguments, SelectItem, SetExpr};
    let Statement::Query(q) = stmt else { return };
    let SetExpr::Select(select) = q.body.as_mut() else { return };
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(e) = item else { continue };
        let name = match &*e {
            Expr::Function(f) if matches!(f.args, FunctionArguments::None) => f.name.to_string().to_lowercase(),
            Expr::Identifier(i) if i.quote_style.is_none() => i.value.to_lowercase(),
            _ => continue,
        };
        let is_register = matches!(
            name.as_str(),
            "current_user" | "current_catalog" | "user" | "session_user" | "current_role" | "current_schema"
        );
        if is_register {
            let expr = e.clone();
            *item = SelectItem::ExprWithAlias { expr, alias: datafusion::sql::sqlparser::ast::Ident::new(name) };
        }
    }
}

/// A password in a statement: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A parsed `CREATE SINK`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkStatement {
    pub name: String,
    pub if_not_exists: bool,
    pub from: String,
    pub connection: String,
    /// The options in parentheses after the connection (TOPIC, PARTITIONS, ...).
    pub kafka_options: BTreeMap<String, String>,
    pub key: Option<Vec<String>>,
    pub key_not_enforced: bool,
    /// FORMAT (only JSON today), upper-cased.
    pub format: Option<String>,
    /// ENVELOPE UPSERT | DEBEZIUM, upper-cased.
    pub envelope: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// What `ALTER SOURCE` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterSourceAction {
    /// Upstream tables to start capturing.
    AddTables(Vec<TableRef>),
    /// Local tables to stop capturing and drop.
    DropTables { names: Vec<String>, cascade: bool },
    /// `RESNAPSHOT`: empty every captured table and capture again from the upstream's current
    /// state (after the binlog position was purged upstream, or on demand).
    Resnapshot,
}

/// Parses SQL text into statements; cheap to share between sessions.
pub struct SqlParser {
    compat: PostgresCompatibilityParser,
    /// datafusion-pg-catalog's rewrite rules for queries over user relations: all but
    /// `RemoveSubqueryFromProjection`, which turns a correlated scalar subquery in a select list
    /// into NULL and adds `LIMIT 1` to the others — a silent wrong answer over user data.
    user_rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl std::fmt::Debug for SqlParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlParser").finish_non_exhaustive()
    }
}

impl Default for SqlParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SqlParser {
    /// A parser with datafusion-pg-catalog's rewrite rules loaded.
    pub fn new() -> Self {
        use datafusion_pg_catalog::sql::rules::*;
        // Not FixArrayLiteral: it split `'{a,"b,c"}'::text[]` at every comma and read NULL as a
        // number; the cast reads Postgres's array text itself (`sql::json`, `pg_array_in`).
        // Not AliasDuplicatedProjectionRewrite: it renames `SELECT *, id` to `__alias_id`,
        // which clients then show; `sql::naming` plans repeats under internal names instead.
        let user_rules: Vec<Arc<dyn SqlStatementRewriteRule>> = vec![
            Arc::new(ResolveUnqualifiedIdentifier),
            Arc::new(RewriteArrayAnyAllOperation),
            Arc::new(PrependUnqualifiedPgTableName),
            Arc::new(StripCallableQualifier),
            Arc::new(CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(StripCollate),
            Arc::new(RewritePgCatalogOperator),
            Arc::new(RewriteRegCastToSubquery::new()),
            Arc::new(FixVersionColumnName),
        ];
        SqlParser { compat: PostgresCompatibilityParser::new(), user_rules }
    }

    fn rewrite_user(&self, mut stmt: Statement) -> Statement {
        name_special_registers(&mut stmt);
        for rule in &self.user_rules {
            stmt = rule.rewrite(stmt);
        }
        stmt
    }

    /// Splits `sql` into statements and parses each.
    pub fn parse(&self, sql: &str) -> Result<Vec<HwStatement>> {
        if let Some(q) = super::client_queries::recognise(sql) {
            return Ok(vec![HwStatement::ClientQuery(q)]);
        }
        super::limits::check_tokens(sql)?;
        let sql = &*super::compat::rewrite(sql);
        let mut statements = self.parse_rewritten(sql)?;
        for s in &mut statements {
            if let HwStatement::Sql(stmt) = s {
                super::limits::check_depth(stmt)?;
                super::compat::rewrite_statement(stmt);
            }
        }
        Ok(statements)
    }

    fn parse_rewritten(&self, sql: &str) -> Result<Vec<HwStatement>> {
        match self.parse_mixed(sql) {
            Ok((stmts, false)) => {
                // Standard SQL only. A catalog query goes through the whole compatibility
                // parser, whose token-level replacements (known client queries DataFusion
                // cannot plan, psql's `\d` footers among them) work on the whole text.
                let catalog = stmts.iter().any(|s| matches!(s, HwStatement::Sql(q) if super::compat::reads_catalog(q)));
                if !catalog {
                    return Ok(stmts);
                }
                match self.compat.parse(sql) {
                    Ok(rewritten) => Ok(rewritten.into_iter().map(|s| HwStatement::Sql(Box::new(s))).collect()),
                    Err(_) => Ok(stmts),
                }
            }
            Ok((stmts, true)) => Ok(stmts),
            // An error inside a Headwater statement is final; in standard SQL, the
            // compatibility parser's token replacements may still rescue the text.
            Err((e, true)) => Err(e),
            Err((e, false)) => match self.compat.parse(sql) {
                Ok(rewritten) => Ok(rewritten.into_iter().map(|s| HwStatement::Sql(Box::new(s))).collect()),
                Err(_) => Err(e),
            },
        }
    }

    /// Parses statement by statement; returns whether any Headwater statement was seen, or
    /// the error and whether it arose in a Headwater statement.
    fn parse_mixed(&self, sql: &str) -> std::result::Result<(Vec<HwStatement>, bool), (Error, bool)> {
        let dialect = PostgreSqlDialect {};
        let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(|e| (e.into(), false))?;
        let mut out = Vec::new();
        let mut any_extension = false;
        loop {
            while p.consume_token(&Token::SemiColon) {}
            if p.peek_token().token == Token::EOF {
                break;
            }
            let in_extension = match parse_extension(&mut p).map_err(|e| (e, true))? {
                Some(stmt) => {
                    any_extension = true;
                    out.push(stmt);
                    true
                }
                None => {
                    let stmt = p.parse_statement().map_err(|e| (e.into(), false))?;
                    out.push(HwStatement::Sql(Box::new(self.rewrite_user(stmt))));
                    false
                }
            };
            let next = p.peek_token().token;
            if next != Token::EOF && next != Token::SemiColon {
                let e = Error::Syntax(format!("expected end of statement, found: {next}"));
                return Err((e, in_extension));
            }
        }
        Ok((out, any_extension))
    }
}

fn word_at(p: &Parser, n: usize) -> Option<String> {
    match p.peek_nth_token(n).token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn object_type_at(p: &Parser, n: usize, plural: bool) -> Option<(ObjectType, usize)> {
    let w = word_at(p, n)?;
    let s = if plural { "S" } else { "" };
    let one = |name: &str| w == format!("{name}{s}");
    if one("TABLE") {
        Some((ObjectType::Table, 1))
    } else if one("VIEW") {
        Some((ObjectType::View, 1))
    } else if w == "MATERIALIZED" && word_at(p, n + 1).as_deref() == Some(&format!("VIEW{s}")) {
        Some((ObjectType::MaterializedView, 2))
    } else if one("SOURCE") {
        Some((ObjectType::Source, 1))
    } else if one("SINK") {
        Some((ObjectType::Sink, 1))
    } else if one("CONNECTION") {
        Some((ObjectType::Connection, 1))
    } else if one("SECRET") {
        Some((ObjectType::Secret, 1))
    } else {
        None
    }
}

fn skip(p: &mut Parser, n: usize) {
    for _ in 0..n {
        p.next_token();
    }
}

/// Parses a Headwater statement at the parser's position, or returns `None` (consuming
/// nothing) when the statement is standard SQL.
fn parse_extension(p: &mut Parser) -> Result<Option<HwStatement>> {
    let Some(first) = word_at(p, 0) else {
        return Ok(None);
    };
    match first.as_str() {
        "CREATE" | "ALTER" | "DROP" if matches!(word_at(p, 1).as_deref(), Some("USER" | "ROLE")) => {
            let login = word_at(p, 1).as_deref() == Some("USER");
            skip(p, 2);
            roles::parse_user_statement(p, &first, login).map(Some)
        }
        "GRANT" | "REVOKE" => {
            skip(p, 1);
            roles::parse_grant(p, first == "REVOKE").map(Some)
        }
        "ALTER" if roles::is_alter_owner(p) => roles::parse_alter_owner(p).map(Some),
        "SHOW" => {
            if word_at(p, 1).as_deref() == Some("CREATE") {
                let Some((object_type, n)) = object_type_at(p, 2, false) else {
                    return Ok(None);
                };
                skip(p, 2 + n);
                let name = object_name(p)?;
                return Ok(Some(HwStatement::ShowCreate { object_type, name }));
            }
            let Some((object_type, n)) = object_type_at(p, 1, true) else {
                return Ok(None);
            };
            skip(p, 1 + n);
            Ok(Some(HwStatement::ShowObjects(object_type)))
        }
        "CREATE" => match word_at(p, 1).as_deref() {
            Some("CONNECTION") => {
                skip(p, 2);
                parse_create_connection(p).map(Some)
            }
            Some("SOURCE") => {
                skip(p, 2);
                parse_create_source(p).map(|s| Some(HwStatement::CreateSource(Box::new(s))))
            }
            Some("SINK") => {
                skip(p, 2);
                parse_create_sink(p).map(|s| Some(HwStatement::CreateSink(Box::new(s))))
            }
            Some("SECRET") => {
                skip(p, 2);
                let if_not_exists = p.parse_keywords(&[
                    datafusion::sql::sqlparser::keywords::Keyword::IF,
                    datafusion::sql::sqlparser::keywords::Keyword::NOT,
                    datafusion::sql::sqlparser::keywords::Keyword::EXISTS,
                ]);
                let name = object_name(p)?;
                let value = secret_value(p)?;
                Ok(Some(HwStatement::CreateSecret { name, if_not_exists, value }))
            }
            _ => Ok(None),
        },
        "ALTER" if word_at(p, 1).as_deref() == Some("SECRET") => {
            skip(p, 2);
            let name = object_name(p)?;
            let value = secret_value(p)?;
            Ok(Some(HwStatement::AlterSecret { name, value }))
        }
        "EXPLAIN" if word_at(p, 1).as_deref() == Some("MATERIALIZED") && word_at(p, 2).as_deref() == Some("VIEW") => {
            skip(p, 3);
            Ok(Some(HwStatement::ExplainView(object_name(p)?)))
        }
        "ALTER" if word_at(p, 1).as_deref() == Some("SOURCE") => {
            skip(p, 2);
            parse_alter_source(p).map(Some)
        }
        "DROP" => {
            let object_type = match word_at(p, 1).as_deref() {
                Some("CONNECTION") => ObjectType::Connection,
                Some("SECRET") => ObjectType::Secret,
                Some("SOURCE") => ObjectType::Source,
                Some("SINK") => ObjectType::Sink,
                _ => return Ok(None),
            };
            skip(p, 2);
            let if_exists = p.parse_keywords(&[
                datafusion::sql::sqlparser::keywords::Keyword::IF,
                datafusion::sql::sqlparser::keywords::Keyword::EXISTS,
            ]);
            let names = p.parse_comma_separated(|p| object_name(p).map_err(to_parser_error))?;
            let cascade = match word_at(p, 0).as_deref() {
                Some("CASCADE") => {
                    p.next_token();
                    true
                }
                Some("RESTRICT") => {
                    p.next_token();
                    false
                }
                _ => false,
            };
            Ok(Some(HwStatement::DropObjects { object_type, names, if_exists, cascade }))
        }
        _ => Ok(None),
    }
}

fn to_parser_error(e: Error) -> ParserError {
    ParserError::ParserError(e.to_string())
}

/// A possibly schema-qualified object name, normalised like Postgres: unquoted parts are
/// lower-cased, quoted parts kept. Headwater has one schema, so `public.x` is `x`.
fn object_name(p: &mut Parser) -> Result<String> {
    let name = p.parse_object_name(false)?;
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() })
        .collect();
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        _ => Err(Error::Syntax(format!("invalid object name: {name}"))),
    }
}

/// An identifier as written (upstream names keep their case).
fn raw_ident(p: &mut Parser) -> Result<String> {
    Ok(p.parse_identifier()?.value)
}

fn expect_word(p: &mut Parser, word: &str) -> Result<()> {
    if word_at(p, 0).as_deref() == Some(word) {
        p.next_token();
        Ok(())
    } else {
        Err(Error::Syntax(format!("expected {word}, found: {}", p.peek_token().token)))
    }
}

fn parse_create_sink(p: &mut Parser) -> Result<SinkStatement> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(p)?;
    expect_word(p, "FROM")?;
    let from = object_name(p)?;
    expect_word(p, "INTO")?;
    expect_word(p, "KAFKA")?;
    expect_word(p, "CONNECTION")?;
    let connection = object_name(p)?;
    let kafka_options = if p.peek_token().token == Token::LParen { parse_options(p)? } else { BTreeMap::new() };
    let mut stmt = SinkStatement {
        name,
        if_not_exists,
        from,
        connection,
        kafka_options,
        key: None,
        key_not_enforced: false,
        format: None,
        envelope: None,
        options: BTreeMap::new(),
    };
    loop {
        match word_at(p, 0).as_deref() {
            Some("KEY") if stmt.key.is_none() => {
                p.next_token();
                p.expect_token(&Token::LParen)?;
                let cols = p.parse_comma_separated(|p| {
                    let i = p.parse_identifier()?;
                    Ok(if i.quote_style.is_some() { i.value } else { i.value.to_lowercase() })
                })?;
                p.expect_token(&Token::RParen)?;
                stmt.key = Some(cols);
                if p.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]) {
                    stmt.key_not_enforced = true;
                }
            }
            Some("FORMAT") if stmt.format.is_none() => {
                p.next_token();
                stmt.format = Some(p.parse_identifier()?.value.to_ascii_uppercase());
            }
            Some("ENVELOPE") if stmt.envelope.is_none() => {
                p.next_token();
                stmt.envelope = Some(p.parse_identifier()?.value.to_ascii_uppercase());
            }
            Some("WITH") if stmt.options.is_empty() => {
                p.next_token();
                stmt.options = parse_options(p)?;
            }
            _ => break,
        }
    }
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::TableSelection;

    fn one(sql: &str) -> HwStatement {
        let mut v = SqlParser::new().parse(sql).unwrap();
        assert_eq!(v.len(), 1, "{sql}");
        v.remove(0)
    }

    #[test]
    fn user_statements() {
        let HwStatement::CreateUser { name, if_not_exists, password, .. } =
            one("CREATE USER Alice WITH LOGIN PASSWORD 's3cret'")
        else {
            panic!("not CREATE USER")
        };
        assert_eq!((name.as_str(), if_not_exists, password.map(|p| p.0)), ("alice", false, Some("s3cret".into())));
        assert!(matches!(one("CREATE ROLE IF NOT EXISTS \"Bob\" NOLOGIN"),
            HwStatement::CreateUser { name, if_not_exists: true, password: None, .. } if name == "Bob"));
        assert!(matches!(one("ALTER USER alice PASSWORD NULL"), HwStatement::AlterUser { password: Some(None), .. }));
        assert!(matches!(one("DROP ROLE IF EXISTS a, b"),
            HwStatement::DropUsers { names, if_exists: true } if names == ["a", "b"]));
        // The password never shows in Debug output (logs).
        assert!(!format!("{:?}", one("CREATE USER x PASSWORD 'hidden'")).contains("hidden"));
    }

    #[test]
    fn create_connection_with_options() {
        let s = one("CREATE CONNECTION IF NOT EXISTS Shop_DB TO MYSQL (HOST '127.0.0.1', PORT 3306, USER 'cdc', PASSWORD = 'pw')");
        let HwStatement::CreateConnection { name, if_not_exists, kind, options } = s else { panic!("{s:?}") };
        assert_eq!(name, "shop_db");
        assert!(if_not_exists);
        assert_eq!(kind, ConnectionKind::Mysql);
        assert_eq!(options["PORT"], "3306");
        assert_eq!(options["PASSWORD"], "pw");
    }

    #[test]
    fn show_and_drop_statements() {
        assert!(matches!(one("show materialized views"), HwStatement::ShowObjects(ObjectType::MaterializedView)));
        assert!(matches!(one("explain materialized view Rev"), HwStatement::ExplainView(n) if n == "rev"));
        assert!(matches!(one("SHOW TABLES"), HwStatement::ShowObjects(ObjectType::Table)));
        assert!(matches!(one("SHOW SOURCES;"), HwStatement::ShowObjects(ObjectType::Source)));
        let s = one("SHOW CREATE TABLE public.\"Orders\"");
        assert!(matches!(s, HwStatement::ShowCreate { object_type: ObjectType::Table, ref name } if name == "Orders"));
        let s = one("DROP CONNECTION IF EXISTS a, b CASCADE");
        assert!(
            matches!(s, HwStatement::DropObjects { object_type: ObjectType::Connection, ref names, if_exists: true, cascade: true } if names.len() == 2)
        );
    }

    #[test]
    fn standard_sql_and_mixtures() {
        let v = SqlParser::new().parse("SELECT 1; SHOW CONNECTIONS; SELECT 2").unwrap();
        assert_eq!(v.len(), 3);
        assert!(matches!(v[0], HwStatement::Sql(_)));
        assert!(matches!(v[1], HwStatement::ShowObjects(ObjectType::Connection)));
        assert!(SqlParser::new().parse("").unwrap().is_empty());
        assert!(matches!(one("SHOW search_path"), HwStatement::Sql(_)));
    }

    #[test]
    fn syntax_errors_are_42601() {
        let e = SqlParser::new().parse("SELEC 1").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
        let e = SqlParser::new().parse("CREATE CONNECTION c TO ORACLE (HOST 'x')").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
        let e = SqlParser::new().parse("SHOW TABLES extra").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
    }

    #[test]
    fn create_source_forms() {
        let s = one("CREATE SOURCE shop FROM MYSQL CONNECTION shop_db FOR TABLES (shop.orders, shop.order_ext AS order_extension) WITH (SERVER_ID = 5401, SNAPSHOT_PARALLELISM = 2, CHUNK_SIZE = 8192)");
        let HwStatement::CreateSource(src) = s else { panic!("{s:?}") };
        let SourceStatement { name, connection, selection, options, .. } = *src;
        assert_eq!((name.as_str(), connection.as_str()), ("shop", "shop_db"));
        assert_eq!(
            selection,
            TableSelection::Tables(vec![
                TableRef::new("shop", "orders", None),
                TableRef::new("shop", "order_ext", Some("order_extension"))
            ])
        );
        assert_eq!(options["SERVER_ID"], "5401");
        let all = one("CREATE SOURCE s FROM MYSQL CONNECTION c FOR ALL TABLES");
        assert!(matches!(all, HwStatement::CreateSource(s) if s.selection == TableSelection::All));
        let schemas =
            one("CREATE SOURCE IF NOT EXISTS s FROM MYSQL CONNECTION c FOR SCHEMAS (a, b) WITH (SNAPSHOT = 'never')");
        assert!(matches!(
            schemas,
            HwStatement::CreateSource(s) if s.if_not_exists && matches!(s.selection, TableSelection::Schemas(_))
        ));
        assert!(SqlParser::new().parse("CREATE SOURCE s FROM MYSQL CONNECTION c FOR EVERYTHING").is_err());
        let sharded = one("CREATE SOURCE s FROM MYSQL CONNECTION c FOR TABLES (shop.orders_[0-9]+ AS orders INCLUDE TABLE NAME AS shard, shop.x)");
        let HwStatement::CreateSource(sharded) = sharded else { panic!() };
        let TableSelection::Tables(list) = sharded.selection else { panic!() };
        assert_eq!(list[0].table, "orders_[0-9]+");
        assert!(list[0].is_pattern());
        assert_eq!(list[0].alias.as_deref(), Some("orders"));
        assert_eq!(list[0].table_name_column.as_deref(), Some("shard"));
        assert_eq!(list[1], TableRef::new("shop", "x", None));
        let kafka = one("CREATE SOURCE IF NOT EXISTS events (id BIGINT PRIMARY KEY, name TEXT NOT NULL) FROM KAFKA CONNECTION k (TOPIC 'ev') FORMAT JSON ENVELOPE upsert WITH (ON_ERROR = 'skip')");
        let HwStatement::CreateSource(kafka) = kafka else { panic!() };
        assert_eq!((kafka.from, kafka.name.as_str(), kafka.if_not_exists), (ConnectionKind::Kafka, "events", true));
        assert_eq!(kafka.columns.as_ref().map(|c| c.columns.len()), Some(2));
        let opts: Vec<(&str, &str)> = kafka.options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(opts, [("ENVELOPE", "UPSERT"), ("FORMAT", "JSON"), ("ON_ERROR", "skip"), ("TOPIC", "ev")]);
        assert!(SqlParser::new().parse("CREATE SOURCE s (a INT) FROM MYSQL CONNECTION c FOR ALL TABLES").is_err());
        assert!(SqlParser::new()
            .parse("CREATE SOURCE s FROM KAFKA CONNECTION c (TOPIC 't') WITH (TOPIC 'u')")
            .is_err());
        let add = one("ALTER SOURCE shop ADD TABLE shop.products");
        let want = AlterSourceAction::AddTables(vec![TableRef::new("shop", "products", None)]);
        assert!(matches!(add, HwStatement::AlterSource { ref action, .. } if *action == want));
        let drop = one("ALTER SOURCE shop DROP TABLE products CASCADE");
        assert!(matches!(
            drop,
            HwStatement::AlterSource { action: AlterSourceAction::DropTables { cascade: true, .. }, .. }
        ));
        let HwStatement::CreateSink(s) =
            one("CREATE SINK IF NOT EXISTS k FROM v INTO KAFKA CONNECTION c (TOPIC 't', PARTITIONS 3) \
             KEY (Day, \"X\") NOT ENFORCED FORMAT JSON ENVELOPE upsert WITH (DELIVERY = 'at_least_once')")
        else {
            panic!()
        };
        assert!(s.if_not_exists);
        assert_eq!((s.name.as_str(), s.from.as_str(), s.connection.as_str()), ("k", "v", "c"));
        assert_eq!(s.kafka_options.get("TOPIC").map(String::as_str), Some("t"));
        assert_eq!(s.kafka_options.get("PARTITIONS").map(String::as_str), Some("3"));
        assert_eq!(s.key, Some(vec!["day".to_string(), "X".to_string()]));
        assert!(s.key_not_enforced);
        assert_eq!(s.envelope.as_deref(), Some("UPSERT"));
        assert_eq!(s.options.get("DELIVERY").map(String::as_str), Some("at_least_once"));
        assert!(SqlParser::new().parse("CREATE SINK k FROM v INTO KAFKA").is_err());
    }
}
