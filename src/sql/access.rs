//! Privilege checks: who may read, write, create, drop and grant what.
//!
//! Postgres's rules, over the roles of [`Users`](crate::catalog::users) and the ACLs of
//! [`Privileges`](crate::catalog::privileges):
//!
//! - A superuser may do anything. So may a session whose user is not a role at all: with
//!   `--auth trust` any name logs in, as every user could before roles existed (local use).
//!   A role that was dropped while its session ran has no privileges left.
//! - An object's owner (or a member of the owning role) may do anything to it: read, write,
//!   `ALTER`, `DROP`, `GRANT`/`REVOKE` on it.
//! - Others need a grant, to them, to a role they are a member of, or to PUBLIC:
//!   `SELECT` to read a relation (views are checked as the view, not what it reads, as in
//!   Postgres), `INSERT`/`UPDATE`/`DELETE` to write a table (and `SELECT` when the statement
//!   reads the table's columns: a WHERE, RETURNING, or `SET x = x + 1`), `USAGE` on a
//!   connection to create a source or sink over it, `CREATE` on the database (or schema
//!   `public`) to create objects — or the role's `CREATEDB` attribute.
//! - Creating a view or sink needs `SELECT` on what it reads; the view belongs to its creator.
//! - `CREATEROLE` lets a role create, alter and drop roles that are not superusers; any role
//!   may change its own password.
//!
//! Checks run before a statement executes ([`check_statement`]) and before a prepared point
//! query ([`require_select`]); a superuser's check is one map lookup.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FromTable, ObjectName, Statement, TableFactor, TableObject, Visit, Visitor,
};

use super::ddl::relation_name;
use super::parser::roles::{GrantObjectType, GrantStatement, GrantTarget};
use super::parser::{HwStatement, ObjectType};
use super::{QueryResult, Session};
use crate::catalog::privileges::{Acl, Privilege, BOOTSTRAP_OWNER, DATABASE, PUBLIC};
use crate::catalog::users::Users;
use crate::catalog::{Catalog, CatalogObject, Namespace};
use crate::error::{Error, Result};

/// Who a session acts as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub superuser: bool,
    pub createrole: bool,
    pub createdb: bool,
    /// The role and every role it is a member of.
    pub roles: Vec<String>,
}

/// The identity of `s`'s user now (attributes and memberships are read at every statement,
/// so a REVOKE or ALTER ROLE applies to sessions already open).
pub fn identity(s: &Session) -> Identity {
    identity_of(s.engine().users(), s.user(), s.logged_in_as_role())
}

/// The identity of user `name` (`None`: the bootstrap user) whose session logged in as a
/// role (`login_role`) or not.
pub fn identity_of(users: &Users, name: Option<String>, login_role: bool) -> Identity {
    let name = name.unwrap_or_else(|| BOOTSTRAP_OWNER.to_string());
    match users.get(&name) {
        Some(r) => Identity {
            superuser: r.superuser,
            createrole: r.createrole,
            createdb: r.createdb,
            roles: users.roles_of(&name),
            name,
        },
        None => {
            Identity { superuser: !login_role, createrole: false, createdb: false, roles: vec![name.clone()], name }
        }
    }
}

/// The owner of `obj`: recorded at creation; a captured table's is its source's; otherwise
/// the bootstrap superuser.
pub fn owner_of(catalog: &Catalog, obj: &CatalogObject) -> String {
    if let Some(owner) = catalog.privileges().get(obj.entry.id).owner {
        return owner;
    }
    let source = obj.entry.depends_on.iter().find_map(|d| d.strip_prefix("source:"));
    if let Some(source) = source.and_then(|name| catalog.get(Namespace::Source, name)) {
        if let Some(owner) = catalog.privileges().get(source.entry.id).owner {
            return owner;
        }
    }
    BOOTSTRAP_OWNER.to_string()
}

/// What object `obj` is called in messages: "table t", "materialized view v".
fn described(obj: &CatalogObject) -> String {
    format!("{} {}", obj.object_type().noun(), obj.entry.name)
}

fn denied(message: String, hint: String) -> Error {
    Error::InsufficientPrivilege { message, hint }
}

/// Whether `who` holds `privilege` on `obj` (as superuser, owner, or by a grant).
pub fn holds(catalog: &Catalog, who: &Identity, obj: &CatalogObject, privilege: Privilege) -> bool {
    if who.superuser {
        return true;
    }
    let owner = owner_of(catalog, obj);
    who.roles.contains(&owner) || catalog.privileges().get(obj.entry.id).grants_any(&who.roles, privilege)
}

/// Whether `who` may create objects.
pub fn may_create(catalog: &Catalog, who: &Identity) -> bool {
    who.superuser || who.createdb || catalog.privileges().get(DATABASE).grants_any(&who.roles, Privilege::Create)
}

/// 42501 unless the session holds `privilege` on `obj`.
pub fn require(s: &Session, who: &Identity, obj: &CatalogObject, privilege: Privilege) -> Result<()> {
    if holds(s.engine().catalog(), who, obj, privilege) {
        return Ok(());
    }
    let grant_on = match obj.object_type() {
        ObjectType::Connection => format!("CONNECTION {}", obj.entry.name),
        _ => obj.entry.name.clone(),
    };
    Err(denied(
        format!("permission denied for {}", described(obj)),
        format!(
            "This needs {} on {}: its owner ({}) or a superuser can run GRANT {} ON {grant_on} TO {}.",
            privilege.keyword(),
            described(obj),
            owner_of(s.engine().catalog(), obj),
            privilege.keyword(),
            who.name
        ),
    ))
}

/// 42501 unless the session may read relation `name` (a prepared point query's check).
pub fn require_select(s: &Session, name: &str) -> Result<()> {
    let who = identity(s);
    if who.superuser {
        return Ok(());
    }
    match s.engine().catalog().get(Namespace::Relation, name) {
        Some(obj) => require(s, &who, &obj, Privilege::Select),
        None => Ok(()),
    }
}

/// 42501 unless the session may insert into relation `name` (`COPY ... FROM STDIN`).
pub fn require_insert(s: &Session, name: &str) -> Result<()> {
    let who = identity(s);
    if who.superuser {
        return Ok(());
    }
    match s.engine().catalog().get(Namespace::Relation, name) {
        Some(obj) => require(s, &who, &obj, Privilege::Insert),
        None => Ok(()),
    }
}

/// 42501 unless the session owns `obj` (or is a superuser).
pub fn require_owner(s: &Session, who: &Identity, obj: &CatalogObject) -> Result<()> {
    if who.superuser || who.roles.contains(&owner_of(s.engine().catalog(), obj)) {
        return Ok(());
    }
    Err(denied(
        format!("must be owner of {}", described(obj)),
        format!(
            "{} belongs to {}; only its owner or a superuser may change or drop it.",
            described(obj),
            owner_of(s.engine().catalog(), obj)
        ),
    ))
}

/// 42501 unless the session may create objects.
fn require_create(s: &Session, who: &Identity) -> Result<()> {
    if may_create(s.engine().catalog(), who) {
        return Ok(());
    }
    Err(denied(
        "permission denied for schema public".into(),
        format!(
            "Creating objects needs CREATE on the database: a superuser can run GRANT CREATE ON SCHEMA public TO {}.",
            who.name
        ),
    ))
}

/// Checks `stmt` against the session's privileges before it runs.
pub fn check_statement(s: &Session, stmt: &HwStatement) -> Result<()> {
    let who = identity(s);
    if who.superuser {
        return Ok(());
    }
    let catalog = s.engine().catalog();
    let named = |ns: Namespace, name: &str| catalog.get(ns, name);
    match stmt {
        HwStatement::Sql(st) => check_standard(s, &who, st),
        HwStatement::CreateConnection { options, .. } => {
            require_create(s, &who)?;
            // A connection that names a secret needs its owner's consent: secrets are used
            // only by their owners.
            for (key, name) in options {
                if key.ends_with(super::parser::SECRET_REFERENCE) {
                    if let Some(secret) = named(Namespace::Secret, name) {
                        require_owner(s, &who, &secret)?;
                    }
                }
            }
            Ok(())
        }
        HwStatement::CreateSecret { .. } => require_create(s, &who),
        HwStatement::AlterSecret { name, .. } => match named(Namespace::Secret, name) {
            Some(obj) => require_owner(s, &who, &obj),
            None => Ok(()),
        },
        HwStatement::CreateSource(source) => {
            require_create(s, &who)?;
            match named(Namespace::Connection, &source.connection) {
                Some(c) => require(s, &who, &c, Privilege::Usage),
                None => Ok(()),
            }
        }
        HwStatement::CreateSink(sink) => {
            require_create(s, &who)?;
            if let Some(c) = named(Namespace::Connection, &sink.connection) {
                require(s, &who, &c, Privilege::Usage)?;
            }
            match named(Namespace::Relation, &sink.from) {
                Some(r) => require(s, &who, &r, Privilege::Select),
                None => Ok(()),
            }
        }
        HwStatement::AlterSource { name, .. } => match named(Namespace::Source, name) {
            Some(obj) => require_owner(s, &who, &obj),
            None => Ok(()),
        },
        HwStatement::DropObjects { object_type, names, .. } => {
            for name in names {
                if let Some(obj) = named(object_type.namespace(), name) {
                    require_owner(s, &who, &obj)?;
                }
            }
            Ok(())
        }
        HwStatement::CreateUser { attributes, .. } => {
            if !who.createrole || attributes.superuser == Some(true) {
                return Err(denied(
                    "permission denied to create role".into(),
                    "Only roles with the CREATEROLE attribute may create roles, and only superusers may create \
                     superusers."
                        .into(),
                ));
            }
            Ok(())
        }
        HwStatement::AlterUser { name, password, attributes } => {
            let own_password = *name == who.name && attributes.is_empty() && password.is_some();
            let target_superuser = s.engine().users().get(name).is_some_and(|r| r.superuser);
            if own_password || (who.createrole && !target_superuser && attributes.superuser.is_none()) {
                return Ok(());
            }
            Err(denied(
                format!("permission denied to alter role \"{name}\""),
                "A role may change its own password; other changes need CREATEROLE (superusers: a superuser).".into(),
            ))
        }
        HwStatement::DropUsers { names, .. } => {
            for name in names {
                let target_superuser = s.engine().users().get(name).is_some_and(|r| r.superuser);
                if !who.createrole || target_superuser {
                    return Err(denied(
                        format!("permission denied to drop role \"{name}\""),
                        "Dropping a role needs CREATEROLE (a superuser to drop a superuser).".into(),
                    ));
                }
            }
            Ok(())
        }
        // Checked as they run, against the objects they name.
        HwStatement::Grant(_) | HwStatement::GrantRoles { .. } | HwStatement::AlterOwner { .. } => Ok(()),
        // Definitions are visible to every role, as in Postgres's catalogs.
        HwStatement::ShowObjects(_)
        | HwStatement::ShowCreate { .. }
        | HwStatement::ExplainView(_)
        | HwStatement::ClientQuery(_)
        | HwStatement::Unsupported(_) => Ok(()),
    }
}

fn check_standard(s: &Session, who: &Identity, st: &Statement) -> Result<()> {
    let catalog = s.engine().catalog();
    let relation = |name: &ObjectName| relation_name(name).ok().and_then(|n| catalog.get(Namespace::Relation, &n));
    let read_all = |node: &dyn VisitRelations, except: Option<&CatalogObject>| -> Result<()> {
        for obj in node.relations(s) {
            if except.is_some_and(|e| e.entry.id == obj.entry.id) {
                continue;
            }
            require(s, who, &obj, Privilege::Select)?;
        }
        Ok(())
    };
    match st {
        Statement::Query(q) => read_all(q.as_ref(), None),
        Statement::Explain { statement, .. } => check_standard(s, who, statement),
        Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else { return Ok(()) };
            let Some(target) = relation(name) else { return Ok(()) };
            require(s, who, &target, Privilege::Insert)?;
            if insert.returning.is_some() {
                require(s, who, &target, Privilege::Select)?;
            }
            if insert.on.is_some() {
                require(s, who, &target, Privilege::Update)?;
                require(s, who, &target, Privilege::Select)?;
            }
            match &insert.source {
                Some(q) => read_all(q.as_ref(), None),
                None => Ok(()),
            }
        }
        Statement::Update(update) => {
            let TableFactor::Table { name, .. } = &update.table.relation else { return Ok(()) };
            let Some(target) = relation(name) else { return Ok(()) };
            require(s, who, &target, Privilege::Update)?;
            let reads_columns = update.selection.is_some()
                || update.returning.is_some()
                || update.assignments.iter().any(|a| names_a_column(&a.value));
            if reads_columns {
                require(s, who, &target, Privilege::Select)?;
            }
            read_all(st, Some(&target))
        }
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let Some(TableFactor::Table { name, .. }) = tables.first().map(|t| &t.relation) else { return Ok(()) };
            let Some(target) = relation(name) else { return Ok(()) };
            require(s, who, &target, Privilege::Delete)?;
            if delete.selection.is_some() || delete.returning.is_some() || delete.using.is_some() {
                require(s, who, &target, Privilege::Select)?;
            }
            read_all(st, Some(&target))
        }
        Statement::CreateTable(ct) => {
            require_create(s, who)?;
            match &ct.query {
                Some(q) => read_all(q.as_ref(), None),
                None => Ok(()),
            }
        }
        Statement::CreateView(cv) => {
            require_create(s, who)?;
            if cv.or_replace {
                if let Some(existing) = relation(&cv.name) {
                    require_owner(s, who, &existing)?;
                }
            }
            read_all(cv.query.as_ref(), None)
        }
        Statement::Drop { names, .. } => {
            for name in names {
                if let Some(obj) = relation(name) {
                    require_owner(s, who, &obj)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether an expression reads a column (`x + 1`, not `1` or `$1`).
fn names_a_column(e: &Expr) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Subquery(_)) {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder(false);
    let _ = e.visit(&mut f);
    f.0
}

/// The catalog relations a piece of a statement names (CTE names that shadow a relation
/// count as the relation: the check errs on the safe side).
trait VisitRelations {
    fn relations(&self, s: &Session) -> Vec<CatalogObject>;
}

impl<T: Visit> VisitRelations for T {
    fn relations(&self, s: &Session) -> Vec<CatalogObject> {
        let mut out: Vec<CatalogObject> = Vec::new();
        let _ = datafusion::sql::sqlparser::ast::visit_relations(self, |name| {
            let obj = relation_name(name).ok().and_then(|n| s.engine().catalog().get(Namespace::Relation, &n));
            if let Some(obj) = obj {
                if !out.iter().any(|o| o.entry.id == obj.entry.id) {
                    out.push(obj);
                }
            }
            ControlFlow::<()>::Continue(())
        });
        out
    }
}

/// The object a creating statement makes (its owner is recorded once it exists).
pub fn created_object(stmt: &HwStatement) -> Option<(Namespace, String)> {
    match stmt {
        HwStatement::Sql(st) => match st.as_ref() {
            Statement::CreateTable(ct) => relation_name(&ct.name).ok().map(|n| (Namespace::Relation, n)),
            Statement::CreateView(cv) => relation_name(&cv.name).ok().map(|n| (Namespace::Relation, n)),
            _ => None,
        },
        HwStatement::CreateConnection { name, .. } => Some((Namespace::Connection, name.clone())),
        HwStatement::CreateSource(source) => Some((Namespace::Source, source.name.clone())),
        HwStatement::CreateSink(sink) => Some((Namespace::Sink, sink.name.clone())),
        HwStatement::CreateSecret { name, .. } => Some((Namespace::Secret, name.clone())),
        _ => None,
    }
}

/// Records the session's role as the owner of what `stmt` created (an object with an id of at
/// least `since` and no owner yet: not one that existed before, under IF NOT EXISTS).
pub fn record_owner(s: &Session, stmt: &HwStatement, since: u64) -> Result<()> {
    let Some((ns, name)) = created_object(stmt) else { return Ok(()) };
    let catalog = s.engine().catalog();
    let Some(obj) = catalog.get(ns, &name).filter(|o| o.entry.id >= since) else { return Ok(()) };
    if catalog.privileges().has(obj.entry.id) {
        return Ok(());
    }
    let owner = identity(s).name;
    catalog.privileges().update(obj.entry.id, |acl| acl.owner = Some(owner))
}

/// The privileges `GRANT ALL` means on objects of a kind, and those that may be granted.
pub fn grantable(object_type: ObjectType) -> &'static [Privilege] {
    use Privilege::*;
    match object_type {
        ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
            &[Insert, Select, Update, Delete, Truncate, References, Trigger]
        }
        ObjectType::Connection => &[Usage],
        ObjectType::Source | ObjectType::Sink | ObjectType::Secret => &[],
    }
}

/// `GRANT` / `REVOKE` of privileges.
pub fn grant(s: &Session, g: &GrantStatement) -> Result<QueryResult> {
    let who = identity(s);
    let catalog = s.engine().catalog();
    let grantees = g.grantees.iter().map(|n| grantee(s, &who, n)).collect::<Result<Vec<_>>>()?;
    let tag = if g.revoke { "REVOKE" } else { "GRANT" };
    let objects: Vec<CatalogObject> = match &g.on {
        GrantTarget::Database => {
            if !who.superuser {
                return Err(denied(
                    "permission denied for database headwater".into(),
                    "Only superusers grant CREATE on the database or schema public.".into(),
                ));
            }
            let privileges = if g.privileges.is_empty() { vec![Privilege::Create] } else { g.privileges.clone() };
            for p in &privileges {
                if !matches!(p, Privilege::Create | Privilege::Usage) {
                    return Err(invalid_privilege(*p, "database"));
                }
            }
            let privileges: Vec<Privilege> = privileges.into_iter().filter(|p| *p == Privilege::Create).collect();
            change(s, DATABASE, &who.name, &grantees, &privileges, g.revoke)?;
            return Ok(QueryResult::command(tag));
        }
        GrantTarget::AllTables => {
            let mut all = catalog.list(ObjectType::Table);
            all.extend(catalog.list(ObjectType::View));
            all.extend(catalog.list(ObjectType::MaterializedView));
            all
        }
        GrantTarget::Objects { object_type: GrantObjectType::Secret, .. } => {
            return Err(Error::FeatureNotSupported("privileges on secrets (only their owner uses them)".into()))
        }
        GrantTarget::Objects { object_type, names } => {
            let ns = match object_type {
                GrantObjectType::Connection => Namespace::Connection,
                _ => Namespace::Relation,
            };
            let mut out = Vec::new();
            for name in names {
                let obj = catalog.get(ns, name).ok_or_else(|| match ns {
                    Namespace::Relation => Error::UndefinedTable(name.clone()),
                    _ => Error::undefined("connection", name.clone()),
                })?;
                if let GrantObjectType::Relation(Some(t)) = object_type {
                    if obj.object_type() != *t {
                        return Err(Error::WrongObjectType { name: name.clone(), expected: t.noun() });
                    }
                }
                out.push(obj);
            }
            out
        }
    };
    for obj in &objects {
        require_owner(s, &who, obj)?;
        let allowed = grantable(obj.object_type());
        let privileges = if g.privileges.is_empty() { allowed.to_vec() } else { g.privileges.clone() };
        if let Some(bad) = privileges.iter().find(|p| !allowed.contains(p)) {
            return Err(invalid_privilege(*bad, obj.object_type().noun()));
        }
        let grantor = owner_of(s.engine().catalog(), obj);
        change(s, obj.entry.id, &grantor, &grantees, &privileges, g.revoke)?;
    }
    Ok(QueryResult::command(tag))
}

fn invalid_privilege(p: Privilege, on: &str) -> Error {
    Error::InvalidGrantOperation(format!("invalid privilege type {} for {on}", p.keyword()))
}

fn change(
    s: &Session,
    id: u64,
    grantor: &str,
    grantees: &[String],
    privileges: &[Privilege],
    revoke: bool,
) -> Result<()> {
    s.engine().catalog().privileges().update(id, |acl: &mut Acl| {
        for g in grantees {
            if revoke {
                if let Some(held) = acl.grants.get_mut(g) {
                    for p in privileges {
                        held.privileges.remove(p);
                    }
                    if held.privileges.is_empty() {
                        acl.grants.remove(g);
                    }
                }
            } else {
                let held = acl.grants.entry(g.clone()).or_default();
                held.privileges.extend(privileges.iter().copied());
                held.grantor = grantor.to_string();
            }
        }
    })
}

/// A grantee as written: PUBLIC, the session's own role, or an existing role (42704).
fn grantee(s: &Session, who: &Identity, name: &str) -> Result<String> {
    match name {
        "PUBLIC" => Ok(PUBLIC.to_string()),
        "CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE" => Ok(who.name.clone()),
        _ if s.engine().users().get(name).is_some() => Ok(name.to_string()),
        _ => Err(Error::undefined("role", name)),
    }
}

/// `GRANT role TO member` / `REVOKE role FROM member`: superusers and CREATEROLE roles
/// (for roles that are not superusers).
pub fn grant_roles(s: &Session, roles: &[String], members: &[String], revoke: bool) -> Result<QueryResult> {
    let who = identity(s);
    let users = s.engine().users();
    for role in roles {
        let record = users.get(role).ok_or_else(|| Error::undefined("role", role.clone()))?;
        if !who.superuser && (!who.createrole || record.superuser) {
            return Err(denied(
                format!("permission denied to grant role \"{role}\""),
                "Granting a role needs CREATEROLE (a superuser for a superuser role).".into(),
            ));
        }
    }
    for role in roles {
        for member in members {
            let member = grantee(s, &who, member)?;
            if member == PUBLIC {
                return Err(Error::InvalidParameterValue("role membership cannot be granted to PUBLIC".into()));
            }
            if revoke {
                users.revoke_membership(role, &member)?;
            } else {
                users.grant_membership(role, &member)?;
            }
        }
    }
    Ok(QueryResult::command(if revoke { "REVOKE ROLE" } else { "GRANT ROLE" }))
}

/// `ALTER ... OWNER TO role`: the owner (who must be a member of the new owning role) or a
/// superuser.
pub fn alter_owner(s: &Session, object_type: ObjectType, name: &str, owner: &str) -> Result<QueryResult> {
    let who = identity(s);
    let catalog = s.engine().catalog();
    let obj = catalog.get(object_type.namespace(), name).ok_or_else(|| match object_type.namespace() {
        Namespace::Relation => Error::UndefinedTable(name.to_string()),
        _ => Error::undefined(object_type.noun(), name.to_string()),
    })?;
    if obj.object_type() != object_type {
        return Err(Error::WrongObjectType { name: name.to_string(), expected: object_type.noun() });
    }
    let owner = grantee(s, &who, owner)?;
    require_owner(s, &who, &obj)?;
    if !who.superuser && !who.roles.contains(&owner) {
        return Err(denied(
            format!("must be able to SET ROLE \"{owner}\""),
            format!("Only a superuser, or a member of role {owner}, may give it {}.", described(&obj)),
        ));
    }
    catalog.privileges().update(obj.entry.id, |acl| acl.owner = Some(owner))?;
    Ok(QueryResult::command(&format!("ALTER {}", object_type.sql_name())))
}

/// `aclitem[]` of relation `obj` as `pg_class.relacl` shows it: `NULL` (default privileges)
/// when nothing was granted.
pub fn acl_items(catalog: &Catalog, obj: &CatalogObject) -> Option<Vec<String>> {
    let acl = catalog.privileges().get(obj.entry.id);
    if acl.grants.is_empty() {
        return None;
    }
    Some(acl.items(&owner_of(catalog, obj), grantable(obj.object_type())))
}
