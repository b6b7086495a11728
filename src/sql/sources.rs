//! `CREATE SOURCE` / restore / start: the SQL side of [`crate::source`].
//!
//! A source is one catalog entry (its statement, depending on its connection) plus one table
//! entry per captured upstream table (depending on `source:<name>`, carrying the upstream
//! [`TableSpec`] in `details`). At start-up both are restored from the catalog, then
//! [`start_all`] starts every source from its stored binlog position.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::{Constraint, Constraints};

use super::parser::{AlterSourceAction, ConnectionKind, ObjectType};
use super::provider::LocalTable;
use super::result::QueryResult;
use super::{Engine, HwStatement, Session};
use crate::catalog::{CatalogEntry, Namespace, Relation};
use crate::change::ChangeBatch;
use crate::error::{Error, Result};
use crate::source::mysql::schema::{discover, upstream, TableSelection, TableSpec};
use crate::source::mysql::{self, check_upstream, connection_opts, CapturedTable, MySqlSource, SourceOptions};
use crate::state::{TableState, WriteBatch};

/// The options of a MySQL connection, from its catalog entry.
fn mysql_connection(s: &Session, name: &str) -> Result<BTreeMap<String, String>> {
    let obj =
        s.engine().catalog().get(Namespace::Connection, name).ok_or_else(|| Error::undefined("connection", name))?;
    match s.parse(&obj.entry.create_sql)?.pop() {
        Some(HwStatement::CreateConnection { kind: ConnectionKind::Mysql, options, .. }) => {
            super::secrets::resolve_options(s, &options)
        }
        Some(HwStatement::CreateConnection { kind, .. }) => Err(Error::InvalidParameterValue(format!(
            "connection \"{name}\" is a {kind} connection; a MySQL source needs a MYSQL connection"
        ))),
        _ => Err(Error::Storage(format!("connection \"{name}\" has a corrupt definition"))),
    }
}

fn source_sql(name: &str, connection: &str, selection: &TableSelection, options: &BTreeMap<String, String>) -> String {
    let q = crate::ident::quoted;
    let what = match selection {
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
    let mut sql = format!("CREATE SOURCE {} FROM MYSQL CONNECTION {} FOR {what}", q(name), q(connection));
    if !options.is_empty() {
        let opts: Vec<String> = options.iter().map(|(k, v)| format!("{k} = '{}'", v.replace('\'', "''"))).collect();
        sql.push_str(&format!(" WITH ({})", opts.join(", ")));
    }
    sql
}

/// `CREATE SOURCE`: checks the upstream server, discovers the tables, creates the local
/// tables and starts capturing.
pub(super) async fn create_source(
    s: &Session,
    name: &str,
    if_not_exists: bool,
    connection: &str,
    selection: &TableSelection,
    options: &BTreeMap<String, String>,
) -> Result<QueryResult> {
    let catalog = s.engine().catalog();
    if catalog.get(Namespace::Source, name).is_some() {
        if if_not_exists {
            return Ok(QueryResult::command("CREATE SOURCE"));
        }
        return Err(Error::duplicate("source", name));
    }
    let conn_options = mysql_connection(s, connection)?;
    let source_options = SourceOptions::parse(options)?;
    let opts = connection_opts(&conn_options)?;
    let mut conn = tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts.clone()))
        .await
        .map_err(|_| Error::DataException {
            sqlstate: "08001",
            message: format!("cannot reach the upstream server of connection \"{connection}\" within 10s"),
        })?
        .map_err(|e| Error::DataException {
            sqlstate: "08001",
            message: format!("cannot connect to the upstream server of connection \"{connection}\": {e}"),
        })?;
    check_upstream(&mut conn, source_options.server_id).await?;
    let specs = discover(&mut conn, selection).await?;
    let _ = conn.disconnect().await.map_err(upstream);
    for spec in &specs {
        if catalog.get(Namespace::Relation, &spec.name).is_some() {
            return Err(Error::DuplicateObject {
                kind: "relation",
                name: format!(
                    "{} (for upstream {}.{}; give it another name with AS)",
                    spec.name, spec.database, spec.table
                ),
            });
        }
    }
    let source = catalog.create(
        ObjectType::Source,
        name,
        source_sql(name, connection, selection, options),
        vec![ObjectType::Connection.dependency_key(connection)],
        None,
        |_| Ok(None),
    )?;
    let mut tables = Vec::new();
    for spec in specs {
        match create_captured_table(s, name, spec, None) {
            Ok(t) => tables.push(t),
            Err(e) => {
                let mut victims = catalog.dependents(&ObjectType::Source.dependency_key(name));
                victims.push(source);
                catalog.drop_objects(&victims)?;
                return Err(e);
            }
        }
    }
    let running = MySqlSource {
        name: name.to_string(),
        id: source.entry.id,
        connection: connection.to_string(),
        opts,
        options: source_options,
        tables,
        store: catalog.store().clone(),
        dataflow: s.engine().dataflow().clone(),
        catalog: Arc::downgrade(catalog),
    };
    s.engine().sources().insert(name, running.start());
    Ok(QueryResult::command("CREATE SOURCE"))
}

fn create_captured_table(s: &Session, source: &str, spec: TableSpec, restore: Option<u64>) -> Result<CapturedTable> {
    let catalog = s.engine().catalog();
    let schema = CapturedTable::schema(&spec);
    let key = (!spec.key.is_empty()).then(|| spec.key.clone());
    let details = serde_json::to_value(&spec).map_err(|e| Error::Internal(e.to_string()))?;
    let spec = Arc::new(spec);
    let store = catalog.store().clone();
    let mut state_out = None;
    catalog.create_with_details(
        ObjectType::Table,
        &spec.name,
        spec.create_sql(),
        vec![ObjectType::Source.dependency_key(source)],
        Some(details),
        restore,
        |id| {
            let state = Arc::new(TableState::new(id, &spec.name, schema, key.clone())?);
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
    let state = state_out.ok_or_else(|| Error::Internal("captured table was not built".into()))?;
    Ok(CapturedTable { spec, state })
}

/// Restores a source's catalog entry (it starts once every entry is back: [`start_all`]).
pub(super) fn restore_source(
    s: &Session,
    entry: &CatalogEntry,
    name: &str,
    connection: &str,
    selection: &TableSelection,
    options: &BTreeMap<String, String>,
) -> Result<()> {
    let sql = source_sql(name, connection, selection, options);
    let deps = vec![ObjectType::Connection.dependency_key(connection)];
    s.engine().catalog().create(ObjectType::Source, name, sql, deps, Some(entry.id), |_| Ok(None))?;
    Ok(())
}

/// Restores a captured table (with its rows) from its catalog entry.
pub(super) fn restore_captured_table(s: &Session, entry: &CatalogEntry, details: &serde_json::Value) -> Result<()> {
    let spec: TableSpec = serde_json::from_value(details.clone())
        .map_err(|e| Error::Storage(format!("corrupt captured table {}: {e}", entry.name)))?;
    let source = entry
        .depends_on
        .iter()
        .find_map(|d| d.strip_prefix("source:"))
        .ok_or_else(|| Error::Storage(format!("captured table {} has no source", entry.name)))?;
    create_captured_table(s, source, spec, Some(entry.id)).map(drop)
}

/// The column count each captured table had before catalog object `id` was created, for the
/// tables that gained columns since (see [`TableSpec::widened`]), by table id.
pub(super) fn widths_before(s: &Session, id: u64) -> std::collections::HashMap<u64, usize> {
    let mut widths = std::collections::HashMap::new();
    for t in s.engine().catalog().list(ObjectType::Table) {
        let Some(details) = &t.entry.details else { continue };
        let Ok(spec) = serde_json::from_value::<TableSpec>(details.clone()) else { continue };
        // The first widening after the object was created: the width the object saw.
        if let Some((_, width)) = spec.widened.iter().find(|(after, _)| *after > id) {
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
    let src = catalog.get(Namespace::Source, name).ok_or_else(|| Error::undefined("source", name))?;
    let Some(HwStatement::CreateSource { connection, options, .. }) = session.parse(&src.entry.create_sql)?.pop()
    else {
        return Err(Error::Storage(format!("source {name} has a corrupt definition")));
    };
    let mut tables = Vec::new();
    for t in owned_tables(session, name) {
        let (Some(details), Some(Relation::Table { state, .. })) = (&t.entry.details, &t.relation) else { continue };
        let spec: TableSpec = serde_json::from_value(details.clone())
            .map_err(|e| Error::Storage(format!("corrupt captured table {}: {e}", t.entry.name)))?;
        tables.push(CapturedTable { spec: Arc::new(spec), state: state.clone() });
    }
    let conn_options = mysql_connection(session, &connection)?;
    let running = MySqlSource {
        name: name.to_string(),
        id: src.entry.id,
        connection,
        opts: mysql::connection_opts(&conn_options)?,
        options: SourceOptions::parse(&options)?,
        tables,
        store: catalog.store().clone(),
        dataflow: engine.dataflow().clone(),
        catalog: Arc::downgrade(catalog),
    };
    engine.sources().insert(name, running.start());
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
    let src = catalog.get(Namespace::Source, name).ok_or_else(|| Error::undefined("source", name))?;
    let Some(HwStatement::CreateSource { connection, options, .. }) = s.parse(&src.entry.create_sql)?.pop() else {
        return Err(Error::Storage(format!("source {name} has a corrupt definition")));
    };
    let owned = owned_tables(s, name);
    let forget: Vec<String>;
    match action {
        AlterSourceAction::AddTables(list) => {
            let opts = connection_opts(&mysql_connection(s, &connection)?)?;
            let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| Error::DataException {
                sqlstate: "08001",
                message: format!("cannot connect to the upstream server of connection \"{connection}\": {e}"),
            })?;
            let specs = discover(&mut conn, &TableSelection::Tables(list.clone())).await?;
            let _ = conn.disconnect().await;
            for spec in &specs {
                if catalog.get(Namespace::Relation, &spec.name).is_some() {
                    return Err(Error::duplicate("relation", spec.name.clone()));
                }
                let captured = owned.iter().any(|t| {
                    t.entry
                        .details
                        .as_ref()
                        .and_then(|d| serde_json::from_value::<TableSpec>(d.clone()).ok())
                        .is_some_and(|o| o.database == spec.database && o.table == spec.table)
                });
                if captured {
                    return Err(Error::duplicate("captured table", format!("{}.{}", spec.database, spec.table)));
                }
            }
            SourceOptions::parse(&options)?;
            s.engine().sources().stop(name).await;
            forget = specs.iter().map(|t| t.name.clone()).collect();
            mysql::forget_tables(catalog.store().as_ref(), src.entry.id, &forget)?;
            for spec in specs {
                create_captured_table(s, name, spec, None)?;
            }
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
            mysql::forget_tables(catalog.store().as_ref(), src.entry.id, &forget)?;
        }
        AlterSourceAction::Resnapshot => {
            s.engine().sources().stop(name).await;
            // Positions start over (the upstream binlog may have been reset): forget where
            // each table's current columns began.
            for t in &owned {
                let Some(details) = &t.entry.details else { continue };
                let Ok(mut spec) = serde_json::from_value::<TableSpec>(details.clone()) else { continue };
                let mut cleared = spec.since.take().is_some();
                for shard in spec.shard_specs.values_mut() {
                    cleared |= shard.since.take().is_some();
                }
                if cleared {
                    let mut entry = t.entry.clone();
                    entry.details = Some(serde_json::to_value(&spec).map_err(|e| Error::Internal(e.to_string()))?);
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
            mysql::reset_progress(catalog.store().as_ref(), src.entry.id)?;
        }
    }
    start_source(s, name)?;
    Ok(QueryResult::command("ALTER SOURCE"))
}
