//! Catalog statements: CREATE / DROP / SHOW of tables, views and connections.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::Constraint;
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast::{CreateTable, CreateView, ObjectName, ObjectType as SqlObjectType, Statement};

use super::parser::{ConnectionKind, ObjectType};
use super::provider::LocalTable;
use super::result::{text_schema, QueryResult};
use super::Session;
use crate::catalog::{CatalogObject, Namespace, Relation};
use crate::error::{Error, Result};
use crate::state::TableState;

/// Normalises a relation name like Postgres: unquoted parts lower-case; only `public` (or
/// `headwater.public`) may qualify it.
pub(super) fn relation_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| if i.quote_style.is_some() { i.value.clone() } else { i.value.to_lowercase() })
        .collect();
    match parts.as_slice() {
        [n] => Ok(n.clone()),
        [s, n] if s == "public" => Ok(n.clone()),
        [d, s, n] if d == super::DATABASE && s == "public" => Ok(n.clone()),
        _ => Err(Error::FeatureNotSupported(format!("relation name {name}: Headwater has one schema, public"))),
    }
}

/// `CREATE TABLE`. DataFusion plans the column list (types, defaults, PRIMARY KEY); the
/// table's rows start empty, or are loaded from the store when `restore` is the catalog id.
pub(super) async fn create_table(s: &Session, ct: &CreateTable, restore: Option<u64>) -> Result<QueryResult> {
    let name = relation_name(&ct.name)?;
    let catalog = s.engine().catalog();
    if ct.if_not_exists && catalog.get(Namespace::Relation, &name).is_some() {
        return Ok(QueryResult::command("CREATE TABLE"));
    }
    if ct.query.is_some() {
        return Err(Error::FeatureNotSupported("CREATE TABLE ... AS".into()));
    }
    let mut normalized = ct.clone();
    normalized.if_not_exists = false;
    let create_sql = Statement::CreateTable(normalized.clone()).to_string();

    let (schema, key_columns, cmt) = plan_table(s, &normalized, &name).await?;
    let constraints = cmt.constraints.clone();
    let defaults = cmt.column_defaults.clone();
    let store = s.engine().dataflow().store().clone();
    catalog.create(ObjectType::Table, &name, create_sql, vec![], restore, |id| {
        let state = Arc::new(TableState::new(id, &name, schema, key_columns)?);
        if restore.is_some() {
            state.load(store.as_ref())?;
        }
        let provider = Arc::new(LocalTable::new(state.clone(), constraints, defaults));
        Ok(Some(Relation::Table { state, provider }))
    })?;
    Ok(QueryResult::command("CREATE TABLE"))
}

/// The columns of a `CREATE TABLE` as Headwater stores them (Arrow schema, key columns not
/// null) and its primary key, planned by DataFusion (a Kafka source's declared columns).
pub(super) async fn planned_columns(s: &Session, ct: &CreateTable) -> Result<(SchemaRef, Option<Vec<usize>>)> {
    let name = relation_name(&ct.name)?;
    plan_table(s, ct, &name).await.map(|(schema, key, _)| (schema, key))
}

async fn plan_table(
    s: &Session,
    ct: &CreateTable,
    name: &str,
) -> Result<(SchemaRef, Option<Vec<usize>>, datafusion::logical_expr::CreateMemoryTable)> {
    let plan = s.plan(&Statement::CreateTable(ct.clone())).await?;
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmt)) = plan else {
        return Err(Error::Internal("CREATE TABLE did not plan to a table".into()));
    };
    let mut key_columns: Option<Vec<usize>> = None;
    for c in cmt.constraints.iter() {
        match c {
            Constraint::PrimaryKey(cols) if key_columns.is_none() => key_columns = Some(cols.clone()),
            Constraint::PrimaryKey(_) => {
                return Err(Error::Syntax(format!("multiple primary keys for table \"{name}\" are not allowed")))
            }
            Constraint::Unique(_) => {
                return Err(Error::FeatureNotSupported("UNIQUE constraints other than the primary key".into()))
            }
        }
    }
    let planned = cmt.input.schema().as_arrow().clone();
    let fields: Vec<Field> = planned
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let in_key = key_columns.as_ref().is_some_and(|k| k.contains(&i));
            // The metadata marks Postgres types kept as text (`crate::types::PgText`).
            Field::new(f.name(), f.data_type().clone(), f.is_nullable() && !in_key).with_metadata(f.metadata().clone())
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok((schema, key_columns, cmt))
}

/// `CREATE [OR REPLACE] VIEW`: planned now (so errors show at CREATE), inlined at query time.
pub(super) async fn create_view(s: &Session, cv: &CreateView, restore: Option<u64>) -> Result<QueryResult> {
    if cv.materialized {
        return super::views::create_materialized_view(s, cv, restore).await;
    }
    let name = relation_name(&cv.name)?;
    let catalog = s.engine().catalog();
    if let Some(existing) = catalog.get(Namespace::Relation, &name) {
        if cv.if_not_exists {
            return Ok(QueryResult::command("CREATE VIEW"));
        }
        if !cv.or_replace {
            return Err(Error::duplicate(existing.object_type().noun(), name));
        }
        if existing.object_type() != ObjectType::View {
            return Err(Error::WrongObjectType { name, expected: "view" });
        }
    }
    let mut normalized = cv.clone();
    normalized.if_not_exists = false;
    normalized.or_replace = false;
    let create_sql = Statement::CreateView(normalized.clone()).to_string();
    let plan = s.plan(&Statement::CreateView(normalized)).await?;
    let LogicalPlan::Ddl(DdlStatement::CreateView(view)) = plan else {
        return Err(Error::Internal("CREATE VIEW did not plan to a view".into()));
    };
    let query = view.input.as_ref().clone();
    let depends_on = relations_read(s, &cv.query);
    if depends_on.contains(&name) {
        return Err(Error::InvalidParameterValue(format!("view \"{name}\" cannot read itself")));
    }
    if cv.or_replace {
        if let Some(existing) = catalog.get(Namespace::Relation, &name) {
            let dependents = catalog.dependents(&name);
            if !dependents.is_empty() {
                return Err(dependent_error(&existing, &dependents));
            }
            catalog.drop_objects(&[existing])?;
        }
    }
    let provider = Arc::new(ViewTable::new(query, Some(create_sql.clone())));
    catalog.create(ObjectType::View, &name, create_sql, depends_on, restore, |_| Ok(Some(Relation::View(provider))))?;
    Ok(QueryResult::command("CREATE VIEW"))
}

/// The catalog relations a query names (DataFusion inlines views while planning, so the plan
/// no longer shows which views a view reads; the AST does).
pub(super) fn relations_read(s: &Session, query: &datafusion::sql::sqlparser::ast::Query) -> Vec<String> {
    use datafusion::sql::sqlparser::ast::{ObjectName, Query, Visit, Visitor};
    /// The relations a query names, without the names of its own CTEs (a recursive view's
    /// CTE has the view's name, and reads itself, not the view).
    struct Names<'a> {
        s: &'a Session,
        ctes: Vec<String>,
        names: Vec<String>,
    }
    impl Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            for cte in q.with.iter().flat_map(|w| &w.cte_tables) {
                let n = &cte.alias.name;
                self.ctes.push(if n.quote_style.is_some() { n.value.clone() } else { n.value.to_lowercase() });
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            if let Ok(n) = relation_name(name) {
                let is_cte = name.0.len() == 1 && self.ctes.contains(&n);
                if !is_cte
                    && !self.names.contains(&n)
                    && self.s.engine().catalog().get(Namespace::Relation, &n).is_some()
                {
                    self.names.push(n);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names { s, ctes: Vec::new(), names: Vec::new() };
    let _ = query.visit(&mut names);
    names.names
}

fn dependent_error(obj: &CatalogObject, dependents: &[CatalogObject]) -> Error {
    Error::DependentObjects {
        kind: obj.object_type().noun(),
        name: obj.entry.name.clone(),
        dependents: dependents.iter().map(|d| format!("{} {}", d.object_type().noun(), d.entry.name)).collect(),
    }
}

/// `DROP TABLE|VIEW|MATERIALIZED VIEW [IF EXISTS] names [CASCADE]` (sqlparser's AST).
pub(super) async fn drop_relations(
    s: &Session,
    object_type: SqlObjectType,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<QueryResult> {
    let t = match object_type {
        SqlObjectType::Table => ObjectType::Table,
        SqlObjectType::View => ObjectType::View,
        SqlObjectType::MaterializedView => ObjectType::MaterializedView,
        other => return Err(Error::FeatureNotSupported(format!("DROP {other}"))),
    };
    let names = names.iter().map(relation_name).collect::<Result<Vec<_>>>()?;
    drop_objects(s, t, &names, if_exists, cascade).await
}

/// Drops objects of one type; with CASCADE also everything that depends on them.
pub(super) async fn drop_objects(
    s: &Session,
    object_type: ObjectType,
    names: &[String],
    if_exists: bool,
    cascade: bool,
) -> Result<QueryResult> {
    let catalog = s.engine().catalog();
    let mut victims: Vec<CatalogObject> = Vec::new();
    for name in names {
        let Some(obj) = catalog.get(object_type.namespace(), name) else {
            if if_exists {
                s.notice(crate::sql::Notice::info(format!(
                    "{} \"{name}\" does not exist, skipping",
                    object_type.noun()
                )));
                continue;
            }
            return Err(match object_type.namespace() {
                Namespace::Relation => Error::UndefinedTable(name.clone()),
                _ => Error::undefined(object_type.noun(), name.clone()),
            });
        };
        if obj.object_type() != object_type {
            return Err(Error::WrongObjectType { name: name.clone(), expected: object_type.noun() });
        }
        let key = object_type.dependency_key(name);
        let dependents: Vec<CatalogObject> = catalog
            .dependents(&key)
            .into_iter()
            .filter(|d| !names.contains(&d.entry.name) || d.object_type() != object_type)
            .collect();
        // A source's own tables go with it; anything else needs CASCADE.
        let blocking: Vec<CatalogObject> = dependents
            .iter()
            .filter(|d| !d.entry.depends_on.contains(&key) || object_type != ObjectType::Source)
            .cloned()
            .collect();
        if !blocking.is_empty() && !cascade {
            return Err(dependent_error(&obj, &blocking));
        }
        for d in dependents.into_iter().chain(std::iter::once(obj)) {
            if !victims.iter().any(|v| v.entry.id == d.entry.id) {
                victims.push(d);
            }
        }
    }
    // Dependents before what they depend on: newest first. Running sources stop first.
    victims.sort_by_key(|v| std::cmp::Reverse(v.entry.id));
    let named: Vec<u64> = victims
        .iter()
        .filter(|v| v.object_type() == object_type && names.contains(&v.entry.name))
        .map(|v| v.entry.id)
        .collect();
    cascade_notice(s, &victims, &named);
    for v in &victims {
        if v.object_type() == ObjectType::Source {
            s.engine().sources().stop(&v.entry.name).await;
        }
    }
    drop_and_release(s, &victims).await?;
    Ok(QueryResult::command(&format!("DROP {}", object_type.sql_name())))
}

/// Postgres's NOTICE for what a CASCADE drops besides the objects named (`named` ids): "drop
/// cascades to materialized view v", or "drop cascades to 3 other objects" with one line per
/// object in its DETAIL.
pub(super) fn cascade_notice(s: &Session, victims: &[CatalogObject], named: &[u64]) {
    let others: Vec<String> = victims
        .iter()
        .filter(|v| !named.contains(&v.entry.id))
        .map(|v| format!("drop cascades to {} {}", v.object_type().noun(), v.entry.name))
        .collect();
    match others.len() {
        0 => {}
        1 => s.notice(crate::sql::Notice::info(others[0].clone())),
        n => {
            let mut notice = crate::sql::Notice::info(format!("drop cascades to {n} other objects"));
            notice.detail = Some(others.join("\n"));
            s.notice(notice);
        }
    }
}

/// Removes `victims` (dependents first) from the catalog and the store, then stops their
/// runtime side: views stop being maintained, sinks stop and their outboxes go.
///
/// The views among them leave the dataflow under its commit lock, in the same step as their
/// stored rows and state are deleted ([`Dataflow::drop_views`](crate::dataflow::Dataflow::drop_views)): a commit or checkpoint cut
/// after the delete would otherwise write rows or state for a view that no longer exists.
pub(super) async fn drop_and_release(s: &Session, victims: &[CatalogObject]) -> Result<()> {
    let views: Vec<u64> =
        victims.iter().filter(|v| v.object_type() == ObjectType::MaterializedView).map(|v| v.entry.id).collect();
    s.engine().dataflow().drop_views(&views, || s.engine().catalog().drop_objects(victims))?;
    for v in victims {
        if v.object_type() == ObjectType::Sink {
            super::sinks::release_sink(s, v.entry.id, &v.entry.name).await?;
        }
    }
    Ok(())
}

/// `CREATE CONNECTION`: checks the options for the kind of system and stores them.
pub(super) fn create_connection(
    s: &Session,
    name: &str,
    if_not_exists: bool,
    kind: ConnectionKind,
    options: &BTreeMap<String, String>,
    restore: Option<u64>,
) -> Result<QueryResult> {
    let catalog = s.engine().catalog();
    if if_not_exists && catalog.get(Namespace::Connection, name).is_some() {
        return Ok(QueryResult::command("CREATE CONNECTION"));
    }
    let (allowed, required): (&[&str], &[&str]) = match kind {
        ConnectionKind::Mysql => (&["HOST", "PORT", "USER", "PASSWORD", "DATABASE", "SSL_MODE"], &["HOST"]),
        ConnectionKind::Kafka => {
            (&["BROKER", "BROKERS", "SECURITY_PROTOCOL", "SASL_MECHANISMS", "SASL_USERNAME", "SASL_PASSWORD"], &[])
        }
    };
    let mut depends_on = Vec::new();
    for (k, v) in options {
        let plain = k.strip_suffix(super::parser::SECRET_REFERENCE);
        if !allowed.contains(&plain.unwrap_or(k)) {
            return Err(Error::InvalidParameterValue(format!(
                "unknown {kind} connection option {k} (valid options: {})",
                allowed.join(", ")
            )));
        }
        if let Some(plain) = plain {
            if !plain.contains("PASSWORD") {
                return Err(Error::InvalidParameterValue(format!("option {plain} cannot name a SECRET")));
            }
            if catalog.get(Namespace::Secret, v).is_none() {
                return Err(Error::undefined("secret", v.clone()));
            }
            depends_on.push(ObjectType::Secret.dependency_key(v));
        }
        if options.contains_key(&format!("{}{}", plain.unwrap_or(k), super::parser::SECRET_REFERENCE))
            && plain.is_none()
        {
            return Err(Error::Syntax(format!("option {k} given twice")));
        }
    }
    for r in required {
        if !options.contains_key(*r) {
            return Err(Error::InvalidParameterValue(format!("{kind} connection requires option {r}")));
        }
    }
    if kind == ConnectionKind::Kafka && !options.contains_key("BROKER") && !options.contains_key("BROKERS") {
        return Err(Error::InvalidParameterValue("KAFKA connection requires option BROKER".into()));
    }
    if let Some(port) = options.get("PORT") {
        port.parse::<u16>()
            .map_err(|_| Error::InvalidParameterValue(format!("PORT must be a number from 1 to 65535, got {port}")))?;
    }
    // Inline passwords are stored encrypted; one stored in clear by an older version is
    // encrypted now, and its entry written again.
    let sealed = super::secrets::seal_options(s.engine().secrets(), options);
    let create_sql = connection_sql(name, kind, &sealed, false);
    let obj = catalog.create(ObjectType::Connection, name, create_sql, depends_on, restore, |_| Ok(None))?;
    if restore.is_some() && sealed != *options {
        let mut batch = crate::state::WriteBatch::default();
        crate::catalog::Catalog::write_entry(&obj.entry, &mut batch)?;
        catalog.store().apply(batch)?;
        tracing::info!(connection = name, "connection password encrypted at rest");
    }
    Ok(QueryResult::command("CREATE CONNECTION"))
}

fn connection_sql(name: &str, kind: ConnectionKind, options: &BTreeMap<String, String>, redact: bool) -> String {
    let opts: Vec<String> = options
        .iter()
        .map(|(k, v)| {
            if k.ends_with(super::parser::SECRET_REFERENCE) {
                return format!("{k} {}", crate::sql::quote_ident(v));
            }
            let secret = super::secrets::is_secret_option(k);
            let v = if redact && secret { "********".to_string() } else { v.replace('\'', "''") };
            if k == "PORT" {
                format!("{k} {v}")
            } else {
                format!("{k} '{v}'")
            }
        })
        .collect();
    format!("CREATE CONNECTION {} TO {kind} ({})", crate::sql::quote_ident(name), opts.join(", "))
}

/// The columns `SHOW <objects>` returns.
pub(super) fn show_objects_schema(t: ObjectType) -> SchemaRef {
    match t {
        ObjectType::Connection => text_schema(&["name", "type"]),
        _ => text_schema(&["name"]),
    }
}

/// `SHOW TABLES | VIEWS | MATERIALIZED VIEWS | SOURCES | SINKS | CONNECTIONS`.
pub(super) fn show_objects(s: &Session, t: ObjectType) -> Result<QueryResult> {
    let objects = s.engine().catalog().list(t);
    let schema = show_objects_schema(t);
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let rows = objects
        .iter()
        .map(|o| match t {
            ObjectType::Connection => {
                let kind = o.entry.create_sql.split_whitespace().nth(4).unwrap_or("").to_ascii_lowercase();
                vec![o.entry.name.clone(), kind]
            }
            _ => vec![o.entry.name.clone()],
        })
        .collect();
    QueryResult::text_rows(&columns, rows)
}

/// `SHOW CREATE <kind> name`: the statement that recreates the object (secrets redacted).
pub(super) fn show_create(s: &Session, t: ObjectType, name: &str) -> Result<QueryResult> {
    let obj = s.engine().catalog().get(t.namespace(), name).ok_or_else(|| match t.namespace() {
        Namespace::Relation => Error::UndefinedTable(name.to_string()),
        _ => Error::undefined(t.noun(), name),
    })?;
    if obj.object_type() != t {
        return Err(Error::WrongObjectType { name: name.to_string(), expected: t.noun() });
    }
    let sql = if t == ObjectType::Secret {
        format!("CREATE SECRET {} AS '********'", crate::sql::quote_ident(name))
    } else if t == ObjectType::Connection {
        match s.parse(&obj.entry.create_sql)?.pop() {
            Some(super::HwStatement::CreateConnection { name, kind, options, .. }) => {
                connection_sql(&name, kind, &options, true)
            }
            _ => obj.entry.create_sql.clone(),
        }
    } else {
        obj.entry.create_sql.clone()
    };
    QueryResult::text_rows(&["name", "create_sql"], vec![vec![obj.entry.name.clone(), sql]])
}
