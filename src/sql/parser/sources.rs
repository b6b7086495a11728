//! `CREATE SOURCE` and `ALTER SOURCE`: MySQL's table selection, Kafka's topic, format and
//! envelope, and the columns a Kafka source declares.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{ColumnDef, TableConstraint};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{
    expect_word, object_name, parse_options, raw_ident, to_parser_error, word_at, AlterSourceAction, ConnectionKind,
    HwStatement,
};
use crate::error::{Error, Result};
use crate::source::{TableRef, TableSelection};

/// A parsed `CREATE SOURCE`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatement {
    pub name: String,
    pub if_not_exists: bool,
    /// The kind of upstream after FROM (MYSQL or KAFKA).
    pub from: ConnectionKind,
    pub connection: String,
    /// MySQL: the tables to capture (`FOR ...`). Kafka: [`TableSelection::All`] (the topic).
    pub selection: TableSelection,
    /// The columns a Kafka source's table has, as `CREATE TABLE` writes them.
    pub columns: Option<DeclaredColumns>,
    /// Every option, keys upper-case: the `WITH (...)` list, and for Kafka the options in
    /// parentheses after the connection (`TOPIC`, ...), `FORMAT` and `ENVELOPE`.
    pub options: BTreeMap<String, String>,
}

/// `(id BIGINT PRIMARY KEY, name TEXT, ...)` of a Kafka source.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredColumns {
    pub columns: Vec<ColumnDef>,
    pub constraints: Vec<TableConstraint>,
}

fn merge(options: &mut BTreeMap<String, String>, more: BTreeMap<String, String>) -> Result<()> {
    for (k, v) in more {
        if options.insert(k.clone(), v).is_some() {
            return Err(Error::Syntax(format!("option {k} given twice")));
        }
    }
    Ok(())
}

pub(super) fn parse_create_source(p: &mut Parser) -> Result<SourceStatement> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(p)?;
    let columns = if p.peek_token().token == Token::LParen {
        let (columns, constraints) = p.parse_columns()?;
        Some(DeclaredColumns { columns, constraints })
    } else {
        None
    };
    expect_word(p, "FROM")?;
    let from = match word_at(p, 0).as_deref() {
        Some("MYSQL") | Some("MARIADB") => ConnectionKind::Mysql,
        Some("KAFKA") => ConnectionKind::Kafka,
        _ => return Err(Error::Syntax(format!("expected MYSQL or KAFKA after FROM, found: {}", p.peek_token().token))),
    };
    p.next_token();
    expect_word(p, "CONNECTION")?;
    let connection = object_name(p)?;
    let mut options = BTreeMap::new();
    let selection = match from {
        ConnectionKind::Mysql => {
            if columns.is_some() {
                return Err(Error::Syntax(
                    "a MySQL source takes its tables' columns from upstream: remove the column list".into(),
                ));
            }
            expect_word(p, "FOR")?;
            mysql_selection(p)?
        }
        ConnectionKind::Kafka => {
            if p.peek_token().token == Token::LParen {
                options = parse_options(p)?;
            }
            while let Some(clause) = word_at(p, 0).filter(|w| w == "FORMAT" || w == "ENVELOPE") {
                p.next_token();
                let value = p.parse_identifier()?.value.to_ascii_uppercase();
                merge(&mut options, BTreeMap::from([(clause, value)]))?;
            }
            TableSelection::All
        }
    };
    if p.parse_keyword(Keyword::WITH) {
        let with = parse_options(p)?;
        merge(&mut options, with)?;
    }
    Ok(SourceStatement { name, if_not_exists, from, connection, selection, columns, options })
}

fn mysql_selection(p: &mut Parser) -> Result<TableSelection> {
    Ok(match word_at(p, 0).as_deref() {
        Some("ALL") => {
            p.next_token();
            expect_word(p, "TABLES")?;
            TableSelection::All
        }
        Some("SCHEMAS") | Some("SCHEMA") | Some("DATABASES") => {
            p.next_token();
            p.expect_token(&Token::LParen)?;
            let list = p.parse_comma_separated(|p| raw_ident(p).map_err(to_parser_error))?;
            p.expect_token(&Token::RParen)?;
            TableSelection::Schemas(list)
        }
        Some("TABLES") | Some("TABLE") => {
            p.next_token();
            p.expect_token(&Token::LParen)?;
            let list = p.parse_comma_separated(upstream_table)?;
            p.expect_token(&Token::RParen)?;
            TableSelection::Tables(list)
        }
        _ => {
            return Err(Error::Syntax(format!(
                "expected TABLES (...), SCHEMAS (...) or ALL TABLES after FOR, found: {}",
                p.peek_token().token
            )))
        }
    })
}

/// `db.table [AS name] [INCLUDE TABLE NAME AS column]`; `table` may be a regular expression
/// (`orders_[0-9]+`) naming shards to merge.
fn upstream_table(p: &mut Parser) -> std::result::Result<TableRef, ParserError> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    let database = raw_ident(p).map_err(to_parser_error)?;
    p.expect_token(&Token::Period)?;
    // The table (pattern) is every token up to AS, INCLUDE, `,` or the closing `)`.
    let mut table = String::new();
    let mut depth = 0i32;
    loop {
        let t = p.peek_token().token;
        let at_end = matches!(&t, Token::Comma | Token::EOF | Token::SemiColon)
            || (t == Token::RParen && depth == 0)
            || (depth == 0 && matches!(word_at(p, 0).as_deref(), Some("AS") | Some("INCLUDE")) && !table.is_empty());
        if at_end {
            break;
        }
        match &t {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth -= 1,
            _ => {}
        }
        match &t {
            Token::Word(w) => table.push_str(&w.value),
            other => table.push_str(&other.to_string()),
        }
        p.next_token();
    }
    if table.is_empty() {
        return Err(ParserError::ParserError(format!("expected a table name after {database}.")));
    }
    let alias = if p.parse_keyword(Keyword::AS) { Some(object_name(p).map_err(to_parser_error)?) } else { None };
    let mut table_name_column = None;
    if word_at(p, 0).as_deref() == Some("INCLUDE") {
        p.next_token();
        expect_word(p, "TABLE").map_err(to_parser_error)?;
        expect_word(p, "NAME").map_err(to_parser_error)?;
        p.expect_keyword(Keyword::AS)?;
        table_name_column = Some(object_name(p).map_err(to_parser_error)?);
    }
    Ok(TableRef { database, table, alias, table_name_column })
}

pub(super) fn parse_alter_source(p: &mut Parser) -> Result<HwStatement> {
    let name = object_name(p)?;
    let action = match word_at(p, 0).as_deref() {
        Some("ADD") => {
            p.next_token();
            expect_word(p, "TABLE")?;
            AlterSourceAction::AddTables(p.parse_comma_separated(upstream_table)?)
        }
        Some("DROP") => {
            p.next_token();
            expect_word(p, "TABLE")?;
            let names = p.parse_comma_separated(|p| object_name(p).map_err(to_parser_error))?;
            let cascade = word_at(p, 0).as_deref() == Some("CASCADE");
            if cascade {
                p.next_token();
            }
            AlterSourceAction::DropTables { names, cascade }
        }
        Some("RESNAPSHOT") => {
            p.next_token();
            AlterSourceAction::Resnapshot
        }
        _ => {
            return Err(Error::Syntax(format!(
                "expected ADD TABLE, DROP TABLE or RESNAPSHOT, found: {}",
                p.peek_token().token
            )))
        }
    };
    Ok(HwStatement::AlterSource { name, action })
}
