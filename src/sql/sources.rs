//! `CREATE SOURCE` / restore / start: the SQL side of [`crate::source`].
//!
//! A source is one catalog entry (its statement, depending on its connection) plus one table
//! entry per captured upstream table (depending on `source:<name>`, carrying the upstream
//! description (`source::TableDef::details`) in `details`). At start-up both are restored from the catalog, then
//! [`start_all`] starts every source from its stored binlog position.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::{Constraint, Constraints};

use super::parser::{AlterSourceAction, ConnectionKind, DeclaredColumns, ObjectType, SourceStatement};
use super::provider::LocalTable;
use super::result::QueryResult;
use super::{Engine, HwStatement, Session};
use crate::catalog::{CatalogEntry, Namespace, Relation};
use crate::change::ChangeBatch;
use crate::error::{Error, Result};
use crate::source::{
    DeclaredTable, SourceConfig, SourceKind, SourceRun, TableDef, TableSelection, KAFKA_TOPIC_OPTIONS,
};
use crate::state::{TableState, WriteBatch};

/// The source kind a connection feeds and the connection's options as written, from its
/// catalog entry; `from` (CREATE SOURCE's `FROM MYSQL|KAFKA`) must be the connection's kind.
fn connection_kind(
    s: &Session,
    name: &str,
    from: Option<ConnectionKind>,
) -> Result<(&'static dyn SourceKind, BTreeMap<String, String>)> {
    let obj =
        s.engine().catalog().get(Namespace::Connection, name).ok_or_else(|| Error::undefined("connection", name))?;
    match s.parse(&obj.entry.create_sql)?.pop() {
        Some(HwStatement::CreateConnection { kind, options, .. }) => {
            if let Some(from) = from.filter(|f| *f != kind) {
                let expected = match from {
                    ConnectionKind::Mysql => "MYSQL connection (the source reads FROM MYSQL)",
                    ConnectionKind::Kafka => "KAFKA connection (the source reads FROM KAFKA)",
                };
                return Err(Error::WrongObjectType { name: name.to_string(), expected });
            }
            let Some(source_kind) = crate::source::kind(&kind.to_string()) else {
                return Err(Error::InvalidParameterValue(format!(
                    "connection \"{name}\" is a {kind} connection, which no source reads"
                )));
            };
            Ok((source_kind, options))
        }
        _ => Err(Error::Storage(format!("connection \"{name}\" has a corrupt definition"))),
    }
}

/// [`connection_kind`] with the options' secrets resolved, to connect.
fn source_connection(
    s: &Session,
    name: &str,
    from: Option<ConnectionKind>,
) -> Result<(&'static dyn SourceKind, BTreeMap<String, String>)> {
    let (kind, options) = connection_kind(s, name, from)?;
    Ok((kind, super::secrets::resolve_options(s, &options)?))
}

/// A source's definition, from its catalog entry, with its catalog id.
fn source_definition(s: &Session, name: &str) -> Result<(u64, SourceStatement)> {
    let src = s.engine().catalog().get(Namespace::Source, name).ok_or_else(|| Error::undefined("source", name))?;
    let Some(HwStatement::CreateSource(stmt)) = s.parse(&src.entry.create_sql)?.pop() else {
        return Err(Error::Storage(format!("source {name} has a corrupt definition")));
    };
    Ok((src.entry.id, *stmt))
}

fn quoted_options(options: &BTreeMap<String, String>) -> String {
    let opts: Vec<String> = options.iter().map(|(k, v)| format!("{k} = '{}'", v.replace('\'', "''"))).collect();
    format!("({})", opts.join(", "))
}

/// The statement a source's catalog entry keeps (and `SHOW CREATE SOURCE` shows).
fn source_sql(stmt: &SourceStatement) -> String {
    let q = crate::ident::quoted;
    let (name, connection) = (q(&stmt.name), q(&stmt.connection));
    if stmt.from == ConnectionKind::Kafka {
        let mut sql = format!("CREATE SOURCE {name}");
        if let Some(cols) = &stmt.columns {
            let items: Vec<String> = cols
                .columns
                .iter()
                .map(|c| c.to_string())
                .chain(cols.constraints.iter().map(|c| c.to_string()))
                .collect();
            sql.push_str(&format!(" ({})", items.join(", ")));
        }
        sql.push_str(&format!(" FROM KAFKA CONNECTION {connection}"));
        let (topic, rest): (BTreeMap<String, String>, BTreeMap<String, String>) =
            stmt.options.clone().into_iter().partition(|(k, _)| KAFKA_TOPIC_OPTIONS.contains(&k.as_str()));
        if !topic.is_empty() {
            sql.push_str(&format!(" {}", quoted_options(&topic)));
        }
        let (clauses, with): (BTreeMap<String, String>, BTreeMap<String, String>) =
            rest.into_iter().partition(|(k, _)| k == "FORMAT" || k == "ENVELOPE");
        for (k, v) in clauses.iter().rev() {
            // FORMAT before ENVELOPE, as written.
            sql.push_str(&format!(" {k} {v}"));
        }
        if !with.is_empty() {
            sql.push_str(&format!(" WITH {}", quoted_options(&with)));
        }
        return sql;
    }
    let what = match &stmt.selection {
        TableSelection::All => "ALL TABLES".to_string(),
        TableSelection::Schemas(list) => {
            format!("SCHEMAS ({})", list.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
        }
        TableSelection::Tables(list) => format!(
            "TABLES ({})",
            list.iter()
                .map(|r| {
                    // A pattern is kept as written; a name is quoted.
                    let mut item = if r.is_pattern() {
                        format!("{}.{}", q(&r.database), r.table)
                    } else {
                        format!("{}.{}", q(&r.database), q(&r.table))
                    };
                    if let Some(a) = &r.alias {
                        item.push_str(&format!(" AS {}", q(a)));
                    }
                    if let Some(c) = &r.table_name_column {
                        item.push_str(&format!(" INCLUDE TABLE NAME AS {}", q(c)));
                    }
                    item
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut sql = format!("CREATE SOURCE {name} FROM MYSQL CONNECTION {connection} FOR {what}");
    if !stmt.options.is_empty() {
        sql.push_str(&format!(" WITH {}", quoted_options(&stmt.options)));
    }
    sql
}

/// The table a source declares its columns for (Kafka), planned as `CREATE TABLE` would.
async fn declared_table(s: &Session, stmt: &SourceStatement) -> Result<Option<DeclaredTable>> {
    let Some(cols) = &stmt.columns else { return Ok(None) };
    let sql = format!(
        "CREATE TABLE {} ({})",
        crate::ident::quoted(&stmt.name),
        cols.columns
            .iter()
            .map(|c| c.to_string())
            .chain(cols.constraints.iter().map(|c| c.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some(HwStatement::Sql(statement)) = s.parse(&sql)?.pop() else {
        return Err(Error::Internal("a column list did not parse as CREATE TABLE".into()));
    };
    let datafusion::sql::sqlparser::ast::Statement::CreateTable(ct) = *statement else {
        return Err(Error::Internal("a column list did not parse as CREATE TABLE".into()));
    };
    let (schema, key) = super::ddl::planned_columns(s, &ct).await?;
    Ok(Some(DeclaredTable { schema, key, create_sql: sql }))
}

/// `CREATE SOURCE`: checks the upstream server, discovers the tables, creates the local
/// tables and starts capturing.
pub(super) async fn create_source(s: &Session, stmt: &SourceStatement) -> Result<QueryResult> {
    let catalog = s.engine().catalog();
    let name = stmt.name.as_str();
    if catalog.get(Namespace::Source, name).is_some() {
        if stmt.if_not_exists {
            return Ok(QueryResult::command("CREATE SOURCE"));
        }
        return Err(Error::duplicate("source", name));
    }
    let connection = stmt.connection.as_str();
    let (kind, conn_options) = source_connection(s, connection, Some(stmt.from))?;
    let declared = declared_table(s, stmt).await?;
    let config = SourceConfig {
        source_name: name,
        connection_name: connection,
        connection: &conn_options,
        options: &stmt.options,
        declared: declared.as_ref(),
    };
    let specs = kind.discover(&config, &stmt.selection, true).await?;
    for spec in &specs {
        if catalog.get(Namespace::Relation, &spec.name).is_some() {
            return Err(Error::DuplicateObject {
                kind: "relation",
                name: format!("{} (for upstream {}; give it another name with AS)", spec.name, spec.upstream),
            });
        }
    }
    // Columns the kind inferred for a one-topic source (a Debezium topic's schema) are kept
    // in the statement, so SHOW CREATE SOURCE shows them (a pattern's tables show theirs in
    // SHOW CREATE TABLE).
    let mut stmt = stmt.clone();
    if stmt.from == ConnectionKind::Kafka && stmt.columns.is_none() && stmt.options.contains_key("TOPIC") {
        if let Some(HwStatement::Sql(table)) =
            specs.first().map(|t| s.parse(&t.create_sql)).transpose()?.and_then(|mut v| v.pop())
        {
            if let datafusion::sql::sqlparser::ast::Statement::CreateTable(ct) = *table {
                stmt.columns = Some(DeclaredColumns { columns: ct.columns, constraints: ct.constraints });
            }
        }
    }
    let source = catalog.create(
        ObjectType::Source,
        name,
        source_sql(&stmt),
        vec![ObjectType::Connection.dependency_key(connection)],
        None,
        |_| Ok(None),
    )?;
    for spec in specs {
        match create_captured_table(s, name, spec, None) {
            Ok(_) => {}
            Err(e) => {
                let mut victims = catalog.dependents(&ObjectType::Source.dependency_key(name));
                victims.push(source);
                catalog.drop_objects(&victims)?;
                return Err(e);
            }
        }
    }
    start_source(s, name)?;
    Ok(QueryResult::command("CREATE SOURCE"))
}

fn create_captured_table(s: &Session, source: &str, def: TableDef, restore: Option<u64>) -> Result<Arc<TableState>> {
    let catalog = s.engine().catalog();
    let store = s.engine().dataflow().store().clone();
    let TableDef { name, schema, key, create_sql, details, .. } = def;
    let mut state_out = None;
    catalog.create_with_details(
        ObjectType::Table,
        &name,
        create_sql,
        vec![ObjectType::Source.dependency_key(source)],
        Some(details),
        restore,
        |id| {
            let state = Arc::new(TableState::new(id, &name, schema, key.clone())?);
            if restore.is_some() {
                state.load(store.as_ref())?;
            }
            let constraints = match &key {
                Some(k) => Constraints::new_unverified(vec![Constraint::PrimaryKey(k.clone())]),
                None => Constraints::default(),
            };
            let provider = Arc::new(LocalTable::new(state.clone(), constraints, vec![]));
            state_out = Some(state.clone());
            Ok(Some(Relation::Table { state, provider }))
        },
    )?;
    state_out.ok_or_else(|| Error::Internal("captured table was not built".into()))
}

/// Restores a source's catalog entry (it starts once every entry is back: [`start_all`]).
pub(super) fn restore_source(s: &Session, entry: &CatalogEntry, stmt: &SourceStatement) -> Result<()> {
    let deps = vec![ObjectType::Connection.dependency_key(&stmt.connection)];
    s.engine()
        .catalog()
        .create(ObjectType::Source, &stmt.name, source_sql(stmt), deps, Some(entry.id), |_| Ok(None))?;
    Ok(())
}

/// Restores a captured table (with its rows) from its catalog entry.
pub(super) fn restore_captured_table(s: &Session, entry: &CatalogEntry, details: &serde_json::Value) -> Result<()> {
    let source = entry
        .depends_on
        .iter()
        .find_map(|d| d.strip_prefix("source:"))
        .ok_or_else(|| Error::Storage(format!("captured table {} has no source", entry.name)))?;
    let (_, stmt) = source_definition(s, source)?;
    let (kind, _) = connection_kind(s, &stmt.connection, None)?;
    let def = kind.table_def(&entry.name, details)?;
    create_captured_table(s, source, def, Some(entry.id)).map(drop)
}

/// The column count each captured table had before catalog object `id` was created, for the
/// tables that gained columns since (the `widened` list of [`TableDef::details`]), by table id.
pub(super) fn widths_before(s: &Session, id: u64) -> std::collections::HashMap<u64, usize> {
    let mut widths = std::collections::HashMap::new();
    for t in s.engine().catalog().list(ObjectType::Table) {
        let Some(widened) = t.entry.details.as_ref().and_then(|d| d.get("widened")) else { continue };
        let Ok(widened) = serde_json::from_value::<Vec<(u64, usize)>>(widened.clone()) else { continue };
        // The first widening after the object was created: the width the object saw.
        if let Some((_, width)) = widened.iter().find(|(after, _)| *after > id) {
            widths.insert(t.entry.id, *width);
        }
    }
    widths
}

/// Starts every source in the catalog (after the catalog is restored).
pub(super) fn start_all(engine: &Arc<Engine>) -> Result<()> {
    let session = engine.session();
    for src in engine.catalog().list(ObjectType::Source) {
        start_source(&session, &src.entry.name)?;
    }
    Ok(())
}

/// Starts one source from its catalog entries and stored progress.
fn start_source(session: &Session, name: &str) -> Result<()> {
    let engine = session.engine();
    let catalog = engine.catalog();
    let (id, stmt) = source_definition(session, name)?;
    let mut tables = Vec::new();
    for t in owned_tables(session, name) {
        let (Some(details), Some(Relation::Table { state, .. })) = (&t.entry.details, &t.relation) else { continue };
        tables.push((details.clone(), state.clone()));
    }
    let (kind, conn_options) = source_connection(session, &stmt.connection, None)?;
    let config = SourceConfig {
        source_name: name,
        connection_name: &stmt.connection,
        connection: &conn_options,
        options: &stmt.options,
        declared: None,
    };
    let run = SourceRun {
        name: name.to_string(),
        id,
        tables,
        store: engine.dataflow().store().clone(),
        dataflow: engine.dataflow().clone(),
        catalog: Arc::downgrade(catalog),
    };
    engine.sources().insert(name, kind.start(&config, run)?);
    Ok(())
}

/// The tables a source captures, oldest first.
fn owned_tables(s: &Session, source: &str) -> Vec<crate::catalog::CatalogObject> {
    let key = ObjectType::Source.dependency_key(source);
    let mut owned: Vec<_> = s
        .engine()
        .catalog()
        .list(ObjectType::Table)
        .into_iter()
        .filter(|t| t.entry.depends_on.contains(&key))
        .collect();
    owned.sort_by_key(|t| t.entry.id);
    owned
}

/// `ALTER SOURCE ... ADD TABLE / DROP TABLE / RESNAPSHOT`. The source restarts from its stored binlog
/// position: existing tables keep their rows and resume streaming, an added table is
/// snapshotted (and merged with the binlog like any other), a dropped one disappears.
pub(super) async fn alter_source(s: &Session, name: &str, action: &AlterSourceAction) -> Result<QueryResult> {
    let catalog = s.engine().catalog();
    let (source_id, stmt) = source_definition(s, name)?;
    let (kind, conn_options) = source_connection(s, &stmt.connection, None)?;
    let owned = owned_tables(s, name);
    let forget: Vec<String>;
    match action {
        AlterSourceAction::AddTables(list) => {
            let config = SourceConfig {
                source_name: name,
                connection_name: &stmt.connection,
                connection: &conn_options,
                options: &stmt.options,
                declared: None,
            };
            let specs = kind.discover(&config, &TableSelection::Tables(list.clone()), false).await?;
            for spec in &specs {
                if catalog.get(Namespace::Relation, &spec.name).is_some() {
                    return Err(Error::duplicate("relation", spec.name.clone()));
                }
                let captured = owned.iter().any(|t| {
                    t.entry.details.as_ref().and_then(|d| kind.upstream_of(d)).as_ref() == Some(&spec.upstream)
                });
                if captured {
                    return Err(Error::duplicate("captured table", spec.upstream.clone()));
                }
            }
            // The tables are created and their stale progress forgotten while the source
            // goes on streaming the others (it has no unit for them, and forgetting writes
            // only their own entries); the source then restarts once with them, so the
            // others pause only for that restart, not for the catalog work.
            forget = specs.iter().map(|t| t.name.clone()).collect();
            kind.forget_tables(catalog.store().as_ref(), source_id, &forget)?;
            let mut created = Ok(());
            for spec in specs {
                if let Err(e) = create_captured_table(s, name, spec, None) {
                    created = Err(e);
                    break;
                }
            }
            // Tables created before a failure are captured all the same.
            s.engine().sources().stop(name).await;
            start_source(s, name)?;
            created?;
            return Ok(QueryResult::command("ALTER SOURCE"));
        }
        AlterSourceAction::DropTables { names, cascade } => {
            let mut victims = Vec::new();
            for n in names {
                let t = owned
                    .iter()
                    .find(|t| &t.entry.name == n)
                    .ok_or_else(|| Error::undefined("table captured by this source", n.clone()))?;
                let dependents = catalog.dependents(n);
                if !dependents.is_empty() && !cascade {
                    return Err(Error::DependentObjects {
                        kind: "table",
                        name: n.clone(),
                        dependents: dependents
                            .iter()
                            .map(|d| format!("{} {}", d.object_type().noun(), d.entry.name))
                            .collect(),
                    });
                }
                victims.extend(dependents);
                victims.push(t.clone());
            }
            s.engine().sources().stop(name).await;
            victims.sort_by_key(|v| std::cmp::Reverse(v.entry.id));
            victims.dedup_by_key(|v| v.entry.id);
            let named: Vec<u64> = owned.iter().filter(|t| names.contains(&t.entry.name)).map(|t| t.entry.id).collect();
            super::ddl::cascade_notice(s, &victims, &named);
            super::ddl::drop_and_release(s, &victims).await?;
            forget = names.clone();
            kind.forget_tables(catalog.store().as_ref(), source_id, &forget)?;
        }
        AlterSourceAction::Resnapshot => {
            s.engine().sources().stop(name).await;
            // Positions start over (the upstream binlog may have been reset): forget where
            // each table's current columns began.
            for t in &owned {
                let Some(details) = &t.entry.details else { continue };
                if let Some(cleared) = kind.details_without_positions(details) {
                    let mut entry = t.entry.clone();
                    entry.details = Some(cleared);
                    let mut batch = WriteBatch::default();
                    crate::catalog::Catalog::write_entry(&entry, &mut batch)?;
                    catalog.store().apply(batch)?;
                    catalog.replace_entry(entry);
                }
            }
            for t in &owned {
                if let Some(Relation::Table { state, .. }) = &t.relation {
                    let all = state.snapshot()?;
                    let change = ChangeBatch::uniform(all, -1);
                    s.engine().dataflow().commit(&[(state.as_ref(), &change)], WriteBatch::default())?;
                }
            }
            kind.reset(catalog.store().as_ref(), source_id)?;
        }
    }
    start_source(s, name)?;
    Ok(QueryResult::command("ALTER SOURCE"))
}
