//! Roles and privileges: `CREATE|ALTER|DROP USER|ROLE`, `GRANT`/`REVOKE` of privileges and of
//! role membership, `ALTER ... OWNER TO`. Postgres's grammar, with Materialize's object
//! kinds (connections, sources, sinks, secrets) beside tables and views.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{expect_word, object_name, object_type_at, skip, word_at, HwStatement, ObjectType, Secret};
use crate::catalog::privileges::Privilege;
use crate::catalog::users::RoleAttributes;
use crate::error::{Error, Result};

/// A parsed `GRANT` or `REVOKE` of privileges.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantStatement {
    pub revoke: bool,
    /// Empty: `ALL [PRIVILEGES]`.
    pub privileges: Vec<Privilege>,
    pub on: GrantTarget,
    /// Role names, `PUBLIC`, or `CURRENT_USER`/`SESSION_USER`/`CURRENT_ROLE` (resolved when run).
    pub grantees: Vec<String>,
}

/// What a `GRANT` is on.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantTarget {
    /// Named objects of one kind (`ON t`, `ON TABLE t`, `ON CONNECTION c`, ...).
    Objects { object_type: GrantObjectType, names: Vec<String> },
    /// `ON ALL TABLES IN SCHEMA public`: every relation there now.
    AllTables,
    /// `ON DATABASE name` or `ON SCHEMA public`: the right to create objects.
    Database,
}

/// The kinds of object a privilege can be granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantObjectType {
    /// A table, view or materialized view (Postgres's `TABLE` covers all three).
    Relation(Option<ObjectType>),
    Connection,
    Secret,
}

/// The rest of `CREATE|ALTER|DROP USER|ROLE` (`verb` is the first word; `login` whether the
/// statement said USER, whose roles may log in unless told otherwise).
pub(super) fn parse_user_statement(p: &mut Parser, verb: &str, login: bool) -> Result<HwStatement> {
    if verb == "DROP" {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = p.parse_comma_separated(|p| Ok(role_name(p.parse_identifier()?)))?;
        return Ok(HwStatement::DropUsers { names, if_exists });
    }
    let if_not_exists = verb == "CREATE" && p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = role_name(p.parse_identifier()?);
    let _ = p.parse_keyword(Keyword::WITH);
    let mut password: Option<Option<Secret>> = None;
    let mut attributes = RoleAttributes::default();
    while let Some(word) = word_at(p, 0) {
        let flag = |on: &str| -> Option<bool> {
            if word == on {
                Some(true)
            } else if word.strip_prefix("NO") == Some(on) {
                Some(false)
            } else {
                None
            }
        };
        if word == "PASSWORD" {
            p.next_token();
            let value = match p.next_token().token {
                Token::SingleQuotedString(s) => Some(Secret(s)),
                Token::Word(w) if w.value.eq_ignore_ascii_case("NULL") => None,
                other => return Err(Error::Syntax(format!("expected a quoted password or NULL, found: {other}"))),
            };
            password = Some(value);
        } else if let Some(v) = flag("SUPERUSER") {
            attributes.superuser = Some(v);
            p.next_token();
        } else if let Some(v) = flag("LOGIN") {
            attributes.login = Some(v);
            p.next_token();
        } else if let Some(v) = flag("CREATEROLE") {
            attributes.createrole = Some(v);
            p.next_token();
        } else if let Some(v) = flag("CREATEDB") {
            attributes.createdb = Some(v);
            p.next_token();
        } else if matches!(
            word.as_str(),
            "ENCRYPTED" | "UNENCRYPTED" | "INHERIT" | "NOINHERIT" | "NOREPLICATION" | "NOBYPASSRLS"
        ) {
            // INHERIT is how every Headwater role works; the rest are no-ops here too.
            p.next_token();
        } else if matches!(word.as_str(), "REPLICATION" | "BYPASSRLS" | "NOINHERIT" | "VALID" | "CONNECTION") {
            return Err(Error::FeatureNotSupported(format!("role attribute {word}")));
        } else {
            break;
        }
    }
    match verb {
        "CREATE" => {
            Ok(HwStatement::CreateUser { name, if_not_exists, password: password.flatten(), login, attributes })
        }
        _ => Ok(HwStatement::AlterUser { name, password, attributes }),
    }
}

/// The rest of a `GRANT` or `REVOKE`.
pub(super) fn parse_grant(p: &mut Parser, revoke: bool) -> Result<HwStatement> {
    if revoke && word_at(p, 0).as_deref() == Some("GRANT") && word_at(p, 1).as_deref() == Some("OPTION") {
        return Err(Error::FeatureNotSupported("REVOKE GRANT OPTION FOR (there are no grant options)".into()));
    }
    // `GRANT a, b TO c` grants roles; `GRANT SELECT, ... ON ...` privileges.
    let words = p.parse_comma_separated(|p| {
        let w = p.parse_identifier()?;
        // `ALL PRIVILEGES`
        if w.value.eq_ignore_ascii_case("ALL") {
            let _ = p.parse_keyword(Keyword::PRIVILEGES);
        }
        if p.peek_token().token == Token::LParen {
            return Err(datafusion::sql::sqlparser::parser::ParserError::ParserError(
                "column privileges are not supported: grant on the whole table".into(),
            ));
        }
        Ok(w)
    })?;
    let to = if revoke { "FROM" } else { "TO" };
    if word_at(p, 0).as_deref() != Some("ON") {
        expect_word(p, to)?;
        let members = grantees(p)?;
        if p.parse_keywords(&[Keyword::WITH, Keyword::ADMIN, Keyword::OPTION]) {
            return Err(Error::FeatureNotSupported("WITH ADMIN OPTION".into()));
        }
        skip_drop_behavior(p);
        return Ok(HwStatement::GrantRoles { roles: words.into_iter().map(role_name).collect(), members, revoke });
    }
    p.next_token();
    let on = target(p)?;
    let mut privileges = Vec::new();
    for w in &words {
        let upper = w.value.to_ascii_uppercase();
        match upper.as_str() {
            "ALL" => {
                privileges.clear();
                break;
            }
            // Every role may connect and use temporary space; there is nothing to grant.
            "CONNECT" | "TEMPORARY" | "TEMP" if on == GrantTarget::Database => {}
            _ => match Privilege::parse(&upper) {
                Some(p) => privileges.push(p),
                None => {
                    return Err(Error::InvalidGrantOperation(format!("unrecognized privilege type \"{}\"", w.value)))
                }
            },
        }
    }
    if words.iter().any(|w| w.value.eq_ignore_ascii_case("ALL")) {
        privileges.clear();
    } else if privileges.is_empty() {
        // Only CONNECT/TEMPORARY: a no-op grant on the database.
        privileges.push(Privilege::Usage);
    }
    expect_word(p, to)?;
    let grantees = grantees(p)?;
    if !revoke && p.parse_keywords(&[Keyword::WITH, Keyword::GRANT, Keyword::OPTION]) {
        return Err(Error::FeatureNotSupported(
            "WITH GRANT OPTION (only an object's owner and superusers grant privileges on it)".into(),
        ));
    }
    if p.parse_keywords(&[Keyword::GRANTED, Keyword::BY]) {
        p.parse_identifier()?;
    }
    skip_drop_behavior(p);
    Ok(HwStatement::Grant(GrantStatement { revoke, privileges, on, grantees }))
}

fn skip_drop_behavior(p: &mut Parser) {
    if matches!(word_at(p, 0).as_deref(), Some("CASCADE" | "RESTRICT")) {
        p.next_token();
    }
}

fn target(p: &mut Parser) -> Result<GrantTarget> {
    match word_at(p, 0).as_deref() {
        Some("ALL") => {
            // ALL TABLES | VIEWS | MATERIALIZED VIEWS IN SCHEMA public
            skip(p, 1);
            if object_type_at(p, 0, true).is_none() {
                return Err(Error::Syntax(format!("expected TABLES, found: {}", p.peek_token().token)));
            }
            let (_, n) = object_type_at(p, 0, true).expect("checked");
            skip(p, n);
            expect_word(p, "IN")?;
            expect_word(p, "SCHEMA")?;
            public_schemas(p)?;
            Ok(GrantTarget::AllTables)
        }
        Some("DATABASE") => {
            skip(p, 1);
            p.parse_comma_separated(|p| p.parse_identifier())?;
            Ok(GrantTarget::Database)
        }
        Some("SCHEMA") => {
            skip(p, 1);
            public_schemas(p)?;
            Ok(GrantTarget::Database)
        }
        Some("SECRET") => {
            skip(p, 1);
            let names = p.parse_comma_separated(|p| object_name(p).map_err(super::to_parser_error))?;
            Ok(GrantTarget::Objects { object_type: GrantObjectType::Secret, names })
        }
        _ => {
            let object_type = match object_type_at(p, 0, false) {
                Some((ObjectType::Connection, n)) => {
                    skip(p, n);
                    GrantObjectType::Connection
                }
                Some((t @ (ObjectType::Source | ObjectType::Sink), _)) => {
                    return Err(Error::FeatureNotSupported(format!(
                        "privileges on a {} (only its owner and superusers use it; grant on its tables instead)",
                        t.noun()
                    )))
                }
                Some((ObjectType::Table, n)) => {
                    skip(p, n);
                    GrantObjectType::Relation(None)
                }
                Some((t, n)) => {
                    skip(p, n);
                    GrantObjectType::Relation(Some(t))
                }
                None => GrantObjectType::Relation(None),
            };
            let names = p.parse_comma_separated(|p| object_name(p).map_err(super::to_parser_error))?;
            Ok(GrantTarget::Objects { object_type, names })
        }
    }
}

/// Schema names in a GRANT: Headwater has `public` only.
fn public_schemas(p: &mut Parser) -> Result<()> {
    for schema in p.parse_comma_separated(|p| p.parse_identifier())? {
        if !schema.value.eq_ignore_ascii_case("public") {
            return Err(Error::undefined("schema", schema.value));
        }
    }
    Ok(())
}

/// `role, PUBLIC, CURRENT_USER, GROUP role, ...`
fn grantees(p: &mut Parser) -> Result<Vec<String>> {
    Ok(p.parse_comma_separated(|p| {
        if word_at(p, 0).as_deref() == Some("GROUP") {
            p.next_token();
        }
        let ident = p.parse_identifier()?;
        let upper = ident.value.to_ascii_uppercase();
        if ident.quote_style.is_none()
            && matches!(upper.as_str(), "PUBLIC" | "CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE")
        {
            return Ok(upper);
        }
        Ok(role_name(ident))
    })?)
}

/// Whether the statement at the parser is `ALTER <object> name OWNER TO role`.
pub(super) fn is_alter_owner(p: &Parser) -> bool {
    let Some((_, n)) = object_type_at(p, 1, false) else { return false };
    // ALTER <type words> name OWNER TO, or ALTER <type words> schema . name OWNER TO
    [1, 3].into_iter().any(|name_tokens| {
        let at = 1 + n + name_tokens;
        word_at(p, at).as_deref() == Some("OWNER") && word_at(p, at + 1).as_deref() == Some("TO")
    })
}

/// `ALTER <object type> name OWNER TO role`.
pub(super) fn parse_alter_owner(p: &mut Parser) -> Result<HwStatement> {
    skip(p, 1);
    let (object_type, n) = object_type_at(p, 0, false).expect("is_alter_owner checked");
    skip(p, n);
    let name = object_name(p)?;
    expect_word(p, "OWNER")?;
    expect_word(p, "TO")?;
    let owner = grantees(p)?;
    match owner.as_slice() {
        [one] if one != "PUBLIC" => Ok(HwStatement::AlterOwner { object_type, name, owner: one.clone() }),
        _ => Err(Error::Syntax("expected one role after OWNER TO".into())),
    }
}

/// A role name as Postgres folds it: unquoted names are lower-cased.
pub(super) fn role_name(ident: datafusion::sql::sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value
    } else {
        ident.value.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::SqlParser;

    fn one(sql: &str) -> HwStatement {
        SqlParser::new().parse(sql).unwrap().remove(0)
    }

    #[test]
    fn grants_parse() {
        let HwStatement::Grant(g) = one("GRANT SELECT, insert ON TABLE public.t, v TO bob, PUBLIC") else { panic!() };
        assert_eq!(g.privileges, [Privilege::Select, Privilege::Insert]);
        assert_eq!(g.grantees, ["bob", "PUBLIC"]);
        assert_eq!(
            g.on,
            GrantTarget::Objects { object_type: GrantObjectType::Relation(None), names: vec!["t".into(), "v".into()] }
        );
        let HwStatement::Grant(g) = one("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM \"Bob\"") else {
            panic!()
        };
        assert!(g.revoke && g.privileges.is_empty() && g.on == GrantTarget::AllTables && g.grantees == ["Bob"]);
        let HwStatement::Grant(g) = one("GRANT USAGE ON CONNECTION mysql TO alice") else { panic!() };
        assert_eq!(
            g.on,
            GrantTarget::Objects { object_type: GrantObjectType::Connection, names: vec!["mysql".into()] }
        );
        assert!(matches!(
            one("GRANT CREATE ON SCHEMA public TO a"),
            HwStatement::Grant(GrantStatement { on: GrantTarget::Database, .. })
        ));
        assert!(
            matches!(one("GRANT readers TO alice, bob"), HwStatement::GrantRoles { revoke: false, ref members, .. } if members == &["alice", "bob"])
        );
        assert!(matches!(one("REVOKE readers FROM alice"), HwStatement::GrantRoles { revoke: true, .. }));
        assert!(
            matches!(one("ALTER TABLE t OWNER TO bob"), HwStatement::AlterOwner { object_type: ObjectType::Table, ref owner, .. } if owner == "bob")
        );
        assert!(matches!(
            one("ALTER MATERIALIZED VIEW public.mv OWNER TO CURRENT_USER"),
            HwStatement::AlterOwner { object_type: ObjectType::MaterializedView, .. }
        ));
        for bad in ["GRANT SELECT (a) ON t TO b", "GRANT SELECT ON t TO b WITH GRANT OPTION", "GRANT FLY ON t TO b"] {
            assert!(SqlParser::new().parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_attributes_parse() {
        let HwStatement::CreateUser { login, attributes, .. } = one("CREATE ROLE r WITH CREATEROLE NOSUPERUSER") else {
            panic!()
        };
        assert!(!login);
        assert_eq!(attributes.createrole, Some(true));
        assert_eq!(attributes.superuser, Some(false));
        let HwStatement::AlterUser { attributes, password, .. } = one("ALTER USER bob SUPERUSER PASSWORD 'x'") else {
            panic!()
        };
        assert_eq!(attributes.superuser, Some(true));
        assert!(password.is_some());
    }
}
