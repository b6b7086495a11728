//! `CREATE USER`, `ALTER USER`, `DROP USER` (and their `ROLE` spellings) over
//! [`Users`], and the users as `pg_catalog.pg_roles` shows them.

use std::sync::Weak;

use async_trait::async_trait;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use super::parser::Secret;
use super::{QueryResult, Session};
use crate::catalog::users::{RoleAttributes, Users};
use crate::error::{Error, Result};

/// The name of the user every server has: the one trust-mode clients are shown as owner.
pub const BOOTSTRAP_USER: &str = "headwater";

/// `CREATE USER|ROLE name [PASSWORD 'pw'] [SUPERUSER] [LOGIN] ...` (privileges checked by
/// `access::check_statement`).
pub(super) fn create_user(
    s: &Session,
    name: &str,
    if_not_exists: bool,
    password: Option<&Secret>,
    login: bool,
    attributes: &RoleAttributes,
) -> Result<QueryResult> {
    check_name(name)?;
    let users = s.engine().users();
    if if_not_exists && users.get(name).is_some() {
        return Ok(QueryResult::command("CREATE ROLE"));
    }
    users.create(name, password.map(|p| p.0.as_str()), login, attributes)?;
    tracing::info!(user = name, "user created");
    Ok(QueryResult::command("CREATE ROLE"))
}

/// `ALTER USER name PASSWORD 'pw' | PASSWORD NULL | SUPERUSER | LOGIN ...`.
pub(super) fn alter_user(
    s: &Session,
    name: &str,
    password: Option<Option<&Secret>>,
    attributes: &RoleAttributes,
) -> Result<QueryResult> {
    let users = s.engine().users();
    if users.get(name).is_none() {
        return Err(Error::undefined("role", name));
    }
    if let Some(pw) = password {
        users.set_password(name, pw.map(|p| p.0.as_str()))?;
    }
    if !attributes.is_empty() {
        users.set_attributes(name, attributes)?;
    }
    Ok(QueryResult::command("ALTER ROLE"))
}

/// `DROP USER [IF EXISTS] name, ...`: all or nothing; a role that owns objects cannot be
/// dropped (2BP01), its grants go with it.
pub(super) fn drop_users(s: &Session, names: &[String], if_exists: bool) -> Result<QueryResult> {
    let users = s.engine().users();
    let catalog = s.engine().catalog();
    for name in names {
        if users.get(name).is_none() && !if_exists {
            return Err(Error::undefined("role", name));
        }
        if Some(name.as_str()) == s.user().as_deref() {
            return Err(Error::ObjectInUse(format!("current user \"{name}\" cannot be dropped")));
        }
        let owned: Vec<String> = catalog
            .privileges()
            .objects_of(name)
            .into_iter()
            .filter_map(|id| catalog.by_id(id))
            .map(|o| format!("owner of {} {}", o.object_type().noun(), o.entry.name))
            .collect();
        if !owned.is_empty() {
            return Err(Error::DependentObjects { kind: "role", name: name.clone(), dependents: owned });
        }
    }
    for name in names {
        if users.drop_user(name)? {
            catalog.privileges().revoke_all_from(name)?;
        }
    }
    Ok(QueryResult::command("DROP ROLE"))
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 63 || name.starts_with("pg_") {
        return Err(Error::InvalidParameterValue(format!(
            "role name \"{name}\" is not allowed (1 to 63 characters, not starting with pg_)"
        )));
    }
    Ok(())
}

/// The users as datafusion-pg-catalog's `pg_roles` lists them, with their attributes.
/// Weak: the crate's catalog tables form a reference cycle with the catalog list, and a strong
/// reference would keep the state store (and its directory lock) alive after shutdown.
#[derive(Debug, Clone)]
pub struct UserRoles(pub Weak<Users>);

#[async_trait]
impl PgCatalogContextProvider for UserRoles {
    async fn roles(&self) -> Vec<String> {
        let mut names = self.0.upgrade().map(|u| u.names()).unwrap_or_default();
        if !names.iter().any(|n| n == BOOTSTRAP_USER) {
            names.insert(0, BOOTSTRAP_USER.to_string());
        }
        names
    }

    async fn role(&self, name: &str) -> Option<Role> {
        let record = self.0.upgrade().and_then(|u| u.get(name));
        // The bootstrap user (or a trust-mode name) acts as a superuser.
        let (superuser, login, createdb, createrole, member_of) = match record {
            Some(r) => (r.superuser, r.login, r.createdb, r.createrole, r.member_of),
            None => (true, true, true, true, vec![]),
        };
        Some(Role {
            name: name.to_string(),
            is_superuser: superuser,
            can_login: login,
            can_create_db: createdb || superuser,
            can_create_role: createrole || superuser,
            can_create_user: createrole || superuser,
            can_replication: false,
            grants: vec![],
            inherited_roles: member_of,
        })
    }
}
