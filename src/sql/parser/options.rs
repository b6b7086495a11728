//! The option lists of Headwater's statements (`CREATE CONNECTION ... (HOST 'h', PASSWORD
//! SECRET s)`, a sink's `WITH (...)`) and the values of `CREATE/ALTER SECRET`.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{Expr, Value};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{expect_word, object_name, to_parser_error, word_at, ConnectionKind, HwStatement, Secret};
use crate::error::{Error, Result};

pub(super) fn parse_create_connection(p: &mut Parser) -> Result<HwStatement> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(p)?;
    p.expect_keyword(Keyword::TO)?;
    let kind = match word_at(p, 0).as_deref() {
        Some("MYSQL") | Some("MARIADB") => ConnectionKind::Mysql,
        Some("KAFKA") => ConnectionKind::Kafka,
        _ => return Err(Error::Syntax(format!("expected MYSQL or KAFKA after TO, found: {}", p.peek_token().token))),
    };
    p.next_token();
    let options = parse_options(p)?;
    Ok(HwStatement::CreateConnection { name, if_not_exists, kind, options })
}

/// `AS 'value'` of CREATE/ALTER SECRET.
pub(super) fn secret_value(p: &mut Parser) -> Result<Secret> {
    expect_word(p, "AS")?;
    match p.next_token().token {
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::DollarQuotedString(datafusion::sql::sqlparser::ast::DollarQuotedString { value: s, .. }) => {
            Ok(Secret(s))
        }
        other => Err(Error::Syntax(format!("expected the secret as a quoted string after AS, found: {other}"))),
    }
}

/// The key suffix that marks an option naming a secret: `PASSWORD SECRET name` is stored
/// as key `PASSWORD SECRET`, value `name`.
pub const SECRET_REFERENCE: &str = " SECRET";

/// `( KEY [=] value, ... )` with upper-cased keys; values are literals or identifiers;
/// `KEY SECRET name` refers to a secret (key [`SECRET_REFERENCE`]-suffixed).
pub(super) fn parse_options(p: &mut Parser) -> Result<BTreeMap<String, String>> {
    p.expect_token(&Token::LParen)?;
    let pairs = p.parse_comma_separated(|p| {
        let mut key = p.parse_identifier()?.value.to_ascii_uppercase();
        // A Kafka source's `TOPIC PATTERN 'regex'` (Materialize's spelling) is TOPIC_PATTERN.
        if key == "TOPIC" && word_at(p, 0).as_deref() == Some("PATTERN") {
            p.next_token();
            key = "TOPIC_PATTERN".into();
        }
        if word_at(p, 0).as_deref() == Some("SECRET")
            && !matches!(p.peek_nth_token(1).token, Token::Comma | Token::RParen)
        {
            p.next_token();
            let name = object_name(p).map_err(to_parser_error)?;
            return Ok((format!("{key}{SECRET_REFERENCE}"), name));
        }
        let _ = p.consume_token(&Token::Eq);
        let value = match p.parse_expr()? {
            Expr::Value(v) => match v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s,
                Value::Number(n, _) => n.to_string(),
                Value::Boolean(b) => b.to_string(),
                other => return Err(ParserError::ParserError(format!("unexpected option value {other}"))),
            },
            Expr::Identifier(i) => i.value,
            other => return Err(ParserError::ParserError(format!("option {key} must be a literal, found {other}"))),
        };
        Ok((key, value))
    })?;
    p.expect_token(&Token::RParen)?;
    let mut options = BTreeMap::new();
    for (k, v) in pairs {
        if options.insert(k.clone(), v).is_some() {
            return Err(Error::Syntax(format!("option {k} given twice")));
        }
    }
    Ok(options)
}
